"""`GET /media/{token}.{ext}`: uploaded edit inputs, for the upstream to fetch. No listing, no hint whether a
token ever existed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..state import state_of


async def serve_media(request: Request) -> Response:
    media = await state_of(request).media.get(request.path_params["name"])
    if media is None:
        raise errors.NotFound("No such media: it never existed or has expired.")
    headers = {
        "cache-control": f"private, max-age={max(0, media.max_age)}",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'",
    }
    return Response(media.data, media_type=media.content_type, headers=headers)
