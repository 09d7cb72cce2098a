"""Administrators' HTTP import and export of the city's data.

    POST /api/import/{kind}              body: the file (application/geo+json,
                                         application/json or text/csv), at most 20 MiB
                                         -> 201 {"imported": N}, or 422 invalid_rows
    GET  /api/export/{kind}?format=geojson|csv
    POST /api/import/roads[?filename=city.osm.pbf|?format=osm|pbf]
                                         body: an OpenStreetMap file, raw or as the
                                         multipart field "file", at most 512 MiB
                                         -> 201 {"imported": edges, "vertices": N},
                                         400 naming what is wrong, 409 while another runs
    GET  /api/export/roads               the road graph as GeoJSON (not re-importable)

Admin role only (401 without a principal, from the auth middleware; 403 for
other roles). Formats and semantics as for ``emergency import``: docs/import.md.
A road upload is streamed to a private temporary folder (never held in
memory), imported by the same osm2pgrouting run as ``emergency import
roads`` over a connection of its own, and the folder is removed whatever
happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import asyncpg
from aiohttp import BodyPartReader, web
from aiohttp.multipart import parse_content_disposition

from command import importer
from command.audit_http import REFUSAL, audit_request
from command.feed_protocol import Principal
from command.imports import KINDS, Format, InvalidRows, decode, dump, parse
from command.keys import POOL, SETTINGS
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
    if kind not in KINDS:
        raise ApiError(404, "not_found", f"no such kind; one of: {', '.join((*KINDS, 'roads'))}")
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


def _invalid(request: web.Request, exc: InvalidRows) -> web.Response:
    count = f"{len(exc.errors)}{' or more' if exc.truncated else ''}"
    first = str(exc.errors[0]) if exc.errors else ""
    message = f"nothing imported: {count} error(s); the first: {first}"
    request[REFUSAL] = message  # the audit row says which row was wrong
    return web.json_response(
        {
            "error": {
                "code": "invalid_rows",
                "message": message,
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
        async with request.app[POOL].acquire() as conn, conn.transaction():
            count = await importer.import_rows(conn, kind, rows)
            await audit_request(
                request,
                conn,
                principal,
                "import.data",
                target=f"import:{kind}",
                status=201,
                detail={"file": name, "rows": count},
            )
    except InvalidRows as exc:
        return _invalid(request, exc)
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


# --- roads ---------------------------------------------------------------------------

#: The default cap on a road upload: a large city's .osm.pbf is tens of MiB,
#: its .osm XML some hundreds. osm2pgrouting holds the whole file in memory,
#: so a bigger one should be cut to the city first (docs/import.md).
MAX_ROAD_UPLOAD = 512 * 1024 * 1024

#: The cap this app enforces (``add_admin_routes``' ``max_road_upload``).
ROAD_UPLOAD_MAX = web.AppKey("road_upload_max", int)
#: One road import at a time per server: each runs osm2pgrouting over a whole
#: city, and a second would only wait for the first's lock on ``roads``.
ROAD_IMPORT_LOCK = web.AppKey("road_import_lock", asyncio.Lock)

_UPLOAD_CHUNK = 1024 * 1024
_OSM_SUFFIXES = (".osm.pbf", ".osm")  # longest first: "x.osm.pbf" is not ".osm"
_OSM_FORMATS = {"osm": ".osm", "pbf": ".osm.pbf"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def osm_file_name(filename: str | None, fmt: str | None) -> str:
    """The name to store an uploaded OpenStreetMap file under, from the name the
    client gave (``filename``) and/or ``fmt`` (``osm`` or ``pbf``).

    The result is a bare file name of safe characters (the client's, so
    errors name its file) ending in ``.osm`` or ``.osm.pbf``.

    Raises:
        ApiError: 400 when neither says which format it is, the name is not
            an OpenStreetMap file's, ``fmt`` is unknown, or the two disagree.
    """
    if fmt is not None and fmt not in _OSM_FORMATS:
        raise ApiError(400, "bad_request", f"format must be 'osm' or 'pbf', got {fmt[:20]!r}")
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    if not name:
        if fmt is None:
            raise ApiError(
                400,
                "bad_request",
                "say which OpenStreetMap format the file is: upload it as multipart field 'file' "
                "with its file name, or add ?filename=city.osm.pbf (or .osm), or ?format=pbf (or osm)",
            )
        return "roads" + _OSM_FORMATS[fmt]
    suffix = next((s for s in _OSM_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        raise ApiError(
            400, "bad_request", f"{name[:100]!r}: roads come from OpenStreetMap files (.osm or .osm.pbf)"
        )
    if fmt is not None and _OSM_FORMATS[fmt] != suffix:
        raise ApiError(400, "bad_request", f"format={fmt} but the file is named {name[:100]!r}")
    stem = _UNSAFE.sub("_", name[: -len(suffix)])[:80].strip("._") or "roads"
    return stem + suffix


def _too_large(limit: int) -> ApiError:
    size = f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
    return ApiError(413, "too_large", f"the file must be at most {size}")


async def _store(chunks: AsyncIterator[bytes], path: Path, limit: int) -> int:
    """Write ``chunks`` to a new file at ``path``; the number of bytes. 413 past ``limit``."""
    size = 0
    try:
        file = await asyncio.to_thread(path.open, "xb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                await asyncio.to_thread(file.write, chunk)
        finally:
            await asyncio.to_thread(file.close)
    except OSError as exc:
        # Not the database's fault, which is what errors_middleware would say.
        raise ApiError(500, "upload_failed", f"could not store the upload: {exc.strerror}") from None
    return size


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_UPLOAD_CHUNK):
        yield chunk


async def _receive_osm(request: web.Request, folder: Path) -> tuple[Path, int]:
    """Save the uploaded OpenStreetMap file in ``folder``: its path and size."""
    limit = request.app[ROAD_UPLOAD_MAX]
    fmt = request.query.get("format")
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.content_type.startswith("multipart/"):
        try:
            reader = await request.multipart()
        except ValueError as exc:  # e.g. no boundary: the client's mistake, not a 500
            raise ApiError(400, "bad_request", f"not a readable multipart body: {exc}") from None
        async for part in reader:
            if isinstance(part, BodyPartReader) and (part.name == "file" or part.filename):
                path = folder / osm_file_name(part.filename, fmt)
                return path, await _store(_part_chunks(part), path, limit)
        raise ApiError(400, "bad_request", "the multipart body has no file: send it as the field 'file'")
    _, params = parse_content_disposition(request.headers.get("Content-Disposition"))
    path = folder / osm_file_name(request.query.get("filename") or params.get("filename"), fmt)
    return path, await _store(request.content.iter_chunked(_UPLOAD_CHUNK), path, limit)


def _one_line(text: str) -> str:
    # One record per line in the log, so an audit grep finds the whole of it.
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _log_stage(principal: Principal, stage: importer.RoadStage) -> None:
    log.info(
        "road import by %s, step %d of %d: %s", principal.username, stage.number, stage.total, stage.detail
    )


async def import_roads(request: web.Request) -> web.Response:
    """Replace the road network with an uploaded OpenStreetMap file (admins)."""
    principal = _require(request, "admin")
    settings = request.app[SETTINGS]
    # osm2pgrouting needs a session of its own, not a pgbouncer transaction,
    # and stages in a schema of its own: the owner's URL when there is one,
    # since the server's role may not create schemas (command/db_roles.py).
    url = settings.migrate_database_url or settings.direct_database_url or settings.database_url
    if url is None:
        raise ApiError(503, "unavailable", "no database is configured")
    lock = request.app[ROAD_IMPORT_LOCK]
    if lock.locked():
        raise ApiError(
            409, "import_running", "a road import is running on this server; try again when it ends"
        )
    async with lock:
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="emergency-roads-upload-"))
        name = "an unnamed upload"
        try:
            path, size = await _receive_osm(request, folder)
            name = path.name
            if size == 0:
                raise ApiError(400, "bad_request", f"{name}: the file is empty")
            log.info("%s started a road import from %s (%d bytes)", principal.username, name, size)
            # A connection of its own: the import may take minutes, and the
            # pool's connections are for alarms and consoles.
            conn = await asyncpg.connect(url)
            try:
                count = await importer.import_roads(
                    conn, url, path, progress=lambda stage: _log_stage(principal, stage)
                )
                vertices: int = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT source FROM roads UNION SELECT target FROM roads) AS v"
                )
            finally:
                await conn.close()
        except ApiError as exc:
            log.warning(
                "%s: road import from %s refused: %s", principal.username, name, _one_line(exc.message)
            )
            raise
        except importer.RoadToolMissing as exc:
            log.error("%s: road import from %s impossible: %s", principal.username, name, _one_line(str(exc)))
            raise ApiError(503, "tool_missing", f"roads cannot be imported on this server: {exc}") from None
        except asyncpg.InsufficientPrivilegeError:
            log.error(
                "%s: road import from %s impossible: the server's database role may not stage it",
                principal.username,
                name,
            )
            raise ApiError(
                503,
                "not_permitted",
                "road imports over HTTP need the schema owner's database URL "
                "(EMERGENCY_MIGRATE_DATABASE_URL); or run `emergency import roads FILE` with it",
            ) from None
        except importer.RoadImportError as exc:
            log.warning("%s: road import from %s refused: %s", principal.username, name, _one_line(str(exc)))
            raise ApiError(
                400, "invalid_roads", f"nothing imported, the road network is unchanged: {exc}"
            ) from None
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
    async with request.app[POOL].acquire() as conn:
        # osm2pgrouting committed on a connection of its own: no shared transaction to join.
        await audit_request(
            request,
            conn,
            principal,
            "import.roads",
            target="import:roads",
            status=201,
            detail={"file": name, "bytes": size, "edges": count, "vertices": vertices},
        )
    log.info(
        "%s imported %d road edges (%d vertices) from %s (%d bytes): the road network was replaced",
        principal.username,
        count,
        vertices,
        name,
        size,
    )
    return web.json_response({"imported": count, "vertices": vertices}, status=201)


async def export_roads(request: web.Request) -> web.StreamResponse:
    """The road graph as GeoJSON, streamed (admins)."""
    _require(request, "admin")
    if request.query.get("format", "geojson") != "geojson":
        raise ApiError(400, "bad_request", "roads are exported as GeoJSON only (format=geojson)")
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/geo+json; charset=utf-8",
            "Content-Disposition": 'attachment; filename="roads.geojson"',
        }
    )
    async with (
        request.app[POOL].acquire() as conn,
        contextlib.aclosing(importer.export_roads(conn)) as pieces,
    ):
        try:
            async for piece in pieces:
                # Prepared at the first piece, which comes once the query runs:
                # a database error before it is still a JSON error answer.
                if not response.prepared:
                    await response.prepare(request)
                await response.write(piece.encode())
        except ConnectionResetError:
            # The client went away mid-file: nothing to answer, and not the
            # database's fault (which errors_middleware would say of an OSError).
            return response
    await response.write_eof()
    return response


def add_admin_routes(app: web.Application, *, max_road_upload: int = MAX_ROAD_UPLOAD) -> None:
    """Register the import and export routes (``command.web``'s middlewares must be installed).

    Args:
        app: the application; road imports read its ``SETTINGS`` for the database URL.
        max_road_upload: the largest OpenStreetMap upload accepted, in bytes.
    """
    app[ROAD_UPLOAD_MAX] = max_road_upload
    app[ROAD_IMPORT_LOCK] = asyncio.Lock()
    # Before the {kind} routes, which would otherwise take "roads" for a kind.
    app.router.add_post("/api/import/roads", import_roads)
    app.router.add_get("/api/export/roads", export_roads)
    app.router.add_post("/api/import/{kind}", import_kind)
    app.router.add_get("/api/export/{kind}", export_kind)
