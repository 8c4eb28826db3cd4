"""The `shim` command: serve | sandbox | emulator | bench. A thin shell over the app and uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import logs
from .config import ConfigurationError, Settings
from .emulator import EMULATORS

if TYPE_CHECKING:  # starlette is imported only on the paths that serve
    from starlette.applications import Starlette


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shim", description="OpenAI-compatible images gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (upstream from SHIM_REAPI_BASE_URL)")
    sandbox = sub.add_parser("sandbox", help="the gateway plus built-in upstream emulators; any key works")
    emulator = sub.add_parser("emulator", help="run an upstream emulator alone")
    for p, port in ((serve, 8000), (sandbox, 8000), (emulator, 9000)):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=port)
    sandbox.add_argument("--time-scale", type=float, default=0.05, help="emulated latency factor")
    emulator.add_argument("--dialect", choices=list(EMULATORS), default=next(iter(EMULATORS)))
    emulator.add_argument("--time-scale", type=float, default=1.0)
    emulator.add_argument("--rate-limit", type=int, default=10)
    bench = sub.add_parser("bench", help="benchmark the pacing against the naive polling loop")
    bench.add_argument("--quick", action="store_true", help="smaller scenarios (for CI smoke runs)")
    bench.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    bench.add_argument("--repeat", choices=("fast", "replicas", "b64-load"), help="only this scenario, a line per run")
    bench.add_argument("--runs", type=int, default=3, help="how many runs of --repeat (default 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import uvicorn

    try:
        from .providers import builtin_providers

        defaults = {name: factory.defaults for name, factory in builtin_providers().items()}
        settings = Settings.from_env(os.environ, defaults)
        # The shim's own lines (one per job event; ids and outcomes, never a key) beside uvicorn's, in the
        # chosen format from the first one on (building the app may already log: route collisions).
        logs.configure(settings.log_level, settings.log_format)
        if args.command == "serve":
            from .app import create_app

            app = create_app(settings)
        elif args.command == "sandbox":
            from .sandbox import create_sandbox_app

            base = f"http://{_connectable(args.host)}:{args.port}"
            app = create_sandbox_app(settings, base_url=base, time_scale=args.time_scale)
            print(_sandbox_banner(base), flush=True)
        elif args.command == "emulator":
            app = _emulator(args)
        elif args.repeat:
            from .bench.repeat import run_repeated

            return run_repeated(args.repeat, max(args.runs, 1), quick=args.quick)
        else:
            from .bench.run import run_bench

            words = ["shim", *(sys.argv[1:] if argv is None else argv)]
            return run_bench(quick=args.quick, json_path=args.json, command=" ".join(words))
    except ConfigurationError as exc:
        print(f"shim: configuration error: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "emulator":
        log_config = logs.uvicorn_log_config(settings.log_format) or uvicorn.config.LOGGING_CONFIG
        uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level, log_config=log_config)
        return 0
    from .server import raise_open_files_limit, uvicorn_config

    raise_open_files_limit()
    uvicorn.Server(uvicorn_config(app, settings, host=args.host, port=args.port)).run()
    return 0


def _emulator(args: argparse.Namespace) -> Starlette:
    return EMULATORS[args.dialect](time_scale=args.time_scale, rate_limit=args.rate_limit)


def _connectable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _sandbox_banner(base: str) -> str:
    return f"""shim sandbox: the gateway on {base}/v1, emulated upstreams inside (any API key works).

    from openai import OpenAI
    import base64
    client = OpenAI(base_url="{base}/v1", api_key="sk-sandbox")
    image = client.images.generate(model="gpt-image-1", prompt="a red panda", size="1024x1024")
    open("panda.png", "wb").write(base64.b64decode(image.data[0].b64_json))
    video = client.videos.create_and_poll(model="sora-2", prompt="a red panda rolls", size="1280x720", seconds="4")
    client.videos.download_content(video.id).write_to_file("panda.mp4")
"""
