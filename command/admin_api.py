"""Administrators' HTTP import and export of the city's data.

    POST /api/import/{kind}              body: the file (application/geo+json,
                                         application/json or text/csv), at most 20 MiB
                                         -> 201 {"imported": N}, or 422 invalid_rows
    GET  /api/export/{kind}?format=geojson|csv

Admin role only (401 without a principal, from the auth middleware; 403 for
other roles). Formats and semantics as for ``emergency import``: docs/import.md.
Roads are not imported over HTTP: ``emergency import roads FILE.osm`` runs
osm2pgrouting, which is no job for a request handler.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePosixPath

import asyncpg
from aiohttp import web
from aiohttp.multipart import parse_content_disposition

from command import importer
from command.imports import KINDS, Format, InvalidRows, decode, dump, parse
from command.keys import POOL
from command.web import ApiError, _require

log = logging.getLogger(__name__)

#: Larger than the app's general request limit (1 MiB): a city's sensors or
#: districts can run to megabytes. The body is read here, in bounded chunks.
MAX_BODY = 20 * 1024 * 1024

_FORMATS: dict[str, Format] = {
    "application/geo+json": "geojson",
    "application/json": "geojson",
    "text/csv": "csv",
}
_MEDIA_TYPES: dict[str, str] = {"geojson": "application/geo+json", "csv": "text/csv"}


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind == "roads":
        raise ApiError(404, "not_found", "roads are imported with `emergency import roads FILE.osm`")
    if kind not in KINDS:
        raise ApiError(404, "not_found", f"no such kind; one of: {', '.join(KINDS)}")
    return kind


async def _body(request: web.Request) -> bytes:
    too_large = ApiError(413, "too_large", f"the file must be at most {MAX_BODY // (1024 * 1024)} MiB")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large
    # Read from the stream, not request.read(): that one enforces the app's 1 MiB.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _file_name(request: web.Request) -> str:
    """What errors call the body: the Content-Disposition file name, if any."""
    _, params = parse_content_disposition(request.headers.get("Content-Disposition"))
    name = PurePosixPath(params.get("filename", "").replace("\\", "/")).name
    return name[:100] if name.isprintable() and name else "request body"


def _invalid(exc: InvalidRows) -> web.Response:
    count = f"{len(exc.errors)}{' or more' if exc.truncated else ''}"
    first = str(exc.errors[0]) if exc.errors else ""
    return web.json_response(
        {
            "error": {
                "code": "invalid_rows",
                "message": f"nothing imported: {count} error(s); the first: {first}",
                "rows": [{"row": e.row, "field": e.field, "message": e.message} for e in exc.errors],
                "truncated": exc.truncated,
            }
        },
        status=422,
    )


async def import_kind(request: web.Request) -> web.Response:
    principal = _require(request, "admin")
    kind = _kind(request)
    fmt = _FORMATS.get(request.content_type)
    if fmt is None or (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the file as application/geo+json, application/json or text/csv, in UTF-8",
        )
    data = await _body(request)
    name = _file_name(request)
    try:
        # Parsing megabytes is CPU work: off the loop, so alarms keep flowing.
        rows = await asyncio.to_thread(lambda: parse(kind, decode(data, name), file=name, fmt=fmt))
        async with request.app[POOL].acquire() as conn:
            count = await importer.import_rows(conn, kind, rows)
    except InvalidRows as exc:
        return _invalid(exc)
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        raise ApiError(422, "rejected", f"nothing imported; the database refused it: {exc}") from None
    log.info("%s imported %d %s from %s", principal.username, count, kind, name)
    return web.json_response({"imported": count}, status=201)


async def export_kind(request: web.Request) -> web.Response:
    _require(request, "admin")
    kind = _kind(request)
    fmt = request.query.get("format", "geojson")
    if fmt not in _MEDIA_TYPES:
        raise ApiError(400, "bad_request", "format must be 'geojson' or 'csv'")
    async with request.app[POOL].acquire() as conn:
        rows = await importer.export_rows(conn, kind)
    text = await asyncio.to_thread(dump, kind, rows, "csv" if fmt == "csv" else "geojson")
    return web.Response(
        text=text,
        content_type=_MEDIA_TYPES[fmt],
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{kind}.{fmt}"'},
    )


def add_admin_routes(app: web.Application) -> None:
    """Register the import and export routes (``command.web``'s middlewares must be installed)."""
    app.router.add_post("/api/import/{kind}", import_kind)
    app.router.add_get("/api/export/{kind}", export_kind)
