"""`GET /v1/models`, `GET /v1/models/{id}`, `GET /healthz` and `GET /readyz`: what the gateway routes, that it
lives (healthz), and that it can take traffic (readyz: every part's readiness check passes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..state import state_of


async def list_models(request: Request) -> Response:
    """Every routable id (image and video models), owned by its provider; `x_shim_passthrough` lists the
    `<provider>/*` prefixes that also take ids not listed (passed to that upstream, which validates them).
    Clients ignore unknown keys."""
    router = state_of(request).router
    data = [model_object(model_id, owner) for model_id, owner in router.listed()]
    prefixes = [f"{provider}/*" for provider in router.passthrough_providers()]
    return JSONResponse({"object": "list", "data": data, "x_shim_passthrough": prefixes})


async def retrieve_model(request: Request) -> Response:
    """One routable id; a pass-through one (not in its provider's catalog) says so with x_shim_passthrough."""
    model_id = request.path_params["model_id"]
    router = state_of(request).router
    route = router.resolve_any(model_id)
    found = model_object(model_id, route.provider)
    if router.passes_through(route):
        found["x_shim_passthrough"] = True
    return JSONResponse(found)


def model_object(model_id: str, owner: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


async def healthz(request: Request) -> Response:
    state = state_of(request)
    upstreams: dict[str, dict[str, object]] = {}
    for name, pacers in state.pacers.items():
        live = list(pacers.stats().values())  # per credential; only totals leave the process
        totals: dict[str, object] = {"keys": len(live)}
        for field in ("queued_calls", "watched_tasks", "requests", "rate_limited"):
            totals[field] = sum(int(stats.get(field, 0)) for stats in live)
        totals["latency"] = pacers.latency()  # what was learned per latency class (pooled across keys)
        upstreams[name] = totals
    return JSONResponse({"status": "ok", "jobs_running": state.jobs.live_jobs(), "upstreams": upstreams})


async def readyz(request: Request) -> Response:
    """200 when every readiness check passes (the providers are built once the lifespan runs), else 503 with
    what is not ready, so a load balancer sends the traffic elsewhere."""
    state = getattr(request.app.state, "shim", None)
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    problems = {name: problem for name, check in state.readiness.items() if (problem := await check()) is not None}
    checks = {"providers": "ok", **{name: problems.get(name, "ok") for name in state.readiness}}
    status = "not_ready" if problems else "ready"
    return JSONResponse({"status": status, "checks": checks}, status_code=503 if problems else 200)
