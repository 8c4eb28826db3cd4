"""The route table: every endpoint, with and without the `/v1` prefix, and the Azure-style paths."""

from __future__ import annotations

from starlette.routing import Route

from . import edits, image_jobs, images, meta, videos
from .media_routes import serve_media


def routes() -> list[Route]:
    table: list[Route] = []
    for prefix in ("/v1", ""):
        table += [
            Route(f"{prefix}/images/generations", images.generations, methods=["POST"]),
            Route(f"{prefix}/images/edits", edits.edits, methods=["POST"]),
            Route(f"{prefix}/images/variations", edits.variations, methods=["POST"]),
            Route(prefix + "/images/jobs/{job_id}", image_jobs.retrieve, methods=["GET"]),
            Route(f"{prefix}/models", meta.list_models, methods=["GET"]),
            Route(prefix + "/models/{model_id:path}", meta.retrieve_model, methods=["GET"]),
            Route(f"{prefix}/videos", videos.create, methods=["POST"]),
            Route(f"{prefix}/videos", videos.list_videos, methods=["GET"]),
            Route(prefix + "/videos/{video_id}", videos.retrieve, methods=["GET"]),
            Route(prefix + "/videos/{video_id}", videos.delete, methods=["DELETE"]),
            Route(prefix + "/videos/{video_id}/content", videos.content, methods=["GET"]),
            Route(prefix + "/videos/{video_id}/remix", videos.remix, methods=["POST"]),
        ]
    table += [
        Route("/openai/deployments/{deployment}/images/generations", images.generations, methods=["POST"]),
        Route("/openai/deployments/{deployment}/images/edits", edits.edits, methods=["POST"]),
        Route("/healthz", meta.healthz, methods=["GET"]),
        Route("/readyz", meta.readyz, methods=["GET"]),
        Route("/media/{name}", serve_media, methods=["GET"]),
    ]
    return table
