"""``emergency import`` and ``emergency export``: the city's data from and to files.

    emergency import KIND FILE [--format csv|geojson]     KIND: districts, units, depots, stock,
    emergency import roads FILE.osm|FILE.osm.pbf            hazards, sites, sensors
    emergency export KIND FILE|- [--format csv|geojson]
    emergency export roads FILE.geojson|- [--format geojson]   the graph, for reading

The format follows the file's extension (.csv; .geojson or .json) unless
``--format`` says otherwise. Formats and semantics: docs/import.md.

Every import, whether it succeeds or fails, appends one ``cli.import`` row
to the audit log (``command/audit.py``, as the REST imports do): the
operating-system user as ``cli:NAME``, from ``local`` (the host name in the
detail), the kind as the target, the file and row count, and the error of a
failed one. A successful row import's entry commits with its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncpg
from tqdm import tqdm

from command import audit, importer
from command.imports import KINDS, Format, InvalidRows, Row, decode, dump, format_of, parse
from command.settings import Settings

T = TypeVar("T")


def _database_url(settings: Settings) -> str:
    # command.cli imports this module to register the commands, so its helpers
    # are imported when a command runs, not at the top. Not _resolved(): that
    # also demands a broker URL, and files need only the database.
    from command.cli import _embedded_urls

    url = settings.database_url or _embedded_urls(settings)[0]
    if url is None:
        raise SystemExit("no database: set EMERGENCY_DATABASE_URL, or run `emergency up`")
    return url


async def _connect(url: str) -> asyncpg.Connection:
    from command.cli import _connect as connect

    return await connect(url)


class ImportAudit:
    """The audit row of one command-line import: written once, ok or failed.

    The command line has no session: the actor is the operating-system user
    who ran it, the address ``local``.
    """

    #: Longest error kept in the entry (a file with many bad rows says them all on stderr).
    MAX_ERROR = 2000

    def __init__(self, url: str, kind: str, path: Path) -> None:
        self._url = url
        self._kind = kind
        self._file = str(path.absolute())
        self.recorded = False

    async def _record(self, conn: asyncpg.Connection, outcome: str, detail: dict[str, Any]) -> None:
        await audit.record(
            conn,
            action="cli.import",
            outcome=outcome,
            actor=audit.cli_actor(),
            role=None,
            address="local",
            target=f"import:{self._kind}",
            detail={"file": self._file, "host": platform.node() or None, **detail},
        )

    async def ok(self, conn: asyncpg.Connection, **detail: Any) -> None:
        """Record the success on ``conn``, in the import's transaction when there is
        one; the caller sets :attr:`recorded` once that has committed."""
        await self._record(conn, "ok", detail)

    def failed(self, error: str, *, outcome: str = "failed", **detail: Any) -> None:
        """Record a failure in a connection of its own (the import's work rolled back).

        When even that is impossible (no database, no schema), say so on
        stderr: the import's own error follows.
        """
        if self.recorded:
            return
        self.recorded = True

        async def main() -> None:
            conn = await _connect(self._url)
            try:
                await self._record(conn, outcome, {**detail, "error": error[: self.MAX_ERROR]})
            finally:
                await conn.close()

        try:
            asyncio.run(main())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            print(f"emergency import: the audit log could not record this failure: {exc}", file=sys.stderr)


def _run(what: str, main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with the database's failures said in one line (nothing is written on any)."""
    try:
        return asyncio.run(main)
    except asyncpg.UndefinedTableError:
        raise SystemExit(f"{what}: the database has no schema yet; run `emergency migrate`") from None
    except asyncpg.PostgresError as exc:
        raise SystemExit(f"{what}: the database refused it: {exc}") from None
    except (OSError, asyncpg.InterfaceError) as exc:
        raise SystemExit(f"{what}: cannot reach the database: {exc}") from None


class Progress:
    """Import progress on stderr: a bar on a terminal, else a few plain lines.

    A bar's carriage returns make a mess of a log file or a CI transcript, so
    when stderr is not a terminal this prints ``imported N of M`` at every
    tenth of the way and at the end.
    """

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._bar: Any = None
        self._printed = 0

    def __call__(self, done: int, total: int) -> None:
        if self._tty:
            if self._bar is None:
                self._bar = tqdm(total=total, desc=self._label, unit=" rows", file=self._stream, leave=False)
            self._bar.update(done - self._bar.n)
            return
        step = max(1, total // 10)
        if done >= total or done - self._printed >= step:
            print(f"imported {done} of {total}", file=self._stream, flush=True)
            self._printed = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class RoadProgress:
    """Road import progress on stderr, like :class:`Progress`: a bar on a
    terminal, else one plain line per step.

    osmium and osm2pgrouting report nothing we could count, so the bar
    counts the import's steps (converting, osm2pgrouting, loading) and names
    the current one; :meth:`tick` keeps its clock running while a step
    takes minutes, so a long import visibly is not stuck.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._bar: Any = None

    def __call__(self, stage: importer.RoadStage) -> None:
        if not self._tty:
            print(
                f"roads: step {stage.number} of {stage.total}: {stage.detail}", file=self._stream, flush=True
            )
            return
        if self._bar is None:
            # No rate: "0.01 steps/s" says nothing; the elapsed time does.
            self._bar = tqdm(
                total=stage.total,
                desc=f"import roads: {stage.name}: ",  # as set_description() writes it
                file=self._stream,
                leave=False,
                bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps done [{elapsed}]",
            )
        self._bar.set_description(f"import roads: {stage.name}", refresh=False)
        self._bar.update(stage.number - 1 - self._bar.n)
        self._bar.refresh()

    def tick(self) -> None:
        """Redraw the bar (its elapsed time), if there is one."""
        if self._bar is not None:
            self._bar.refresh()

    async def tick_every(self, seconds: float) -> None:
        """Redraw the bar every ``seconds`` until cancelled."""
        while True:
            await asyncio.sleep(seconds)
            self.tick()

    def close(self, *, done: bool) -> None:
        """Remove the bar; ``done``: the last step finished (the bar fills first)."""
        if self._bar is not None:
            if done:
                self._bar.update(self._bar.total - self._bar.n)
            self._bar.close()


def _format(args: argparse.Namespace, name: str) -> Format:
    fmt: Format | None = args.format or format_of(name)
    if fmt is None:
        raise SystemExit(
            f"{name}: say --format csv or --format geojson (no .csv, .geojson or .json extension)"
        )
    return fmt


def cmd_import(args: argparse.Namespace, settings: Settings) -> None:
    url = _database_url(settings)
    record = ImportAudit(url, args.kind, args.file)
    try:
        if args.kind == "roads":
            _import_roads(url, args.file, args.mapconfig, record)
        else:
            _import_rows(args, url, record)
    except SystemExit as exc:
        # Every refusal ends here, as the message the user reads.
        record.failed(str(exc.code))
        raise
    except KeyboardInterrupt:
        record.failed("interrupted", outcome="error")
        raise
    except Exception as exc:
        record.failed(f"{type(exc).__name__}: {exc}", outcome="error")
        raise


def _import_rows(args: argparse.Namespace, url: str, record: ImportAudit) -> None:
    path: Path = args.file
    if args.mapconfig is not None:
        raise SystemExit("emergency import: --mapconfig is for roads only")
    name = str(path)
    fmt = _format(args, name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"emergency import: cannot read {name}: {exc.strerror}") from None
    progress = Progress(f"import {args.kind}")

    async def main(rows: Sequence[Row]) -> int:
        conn = await _connect(url)
        try:
            # The audit entry commits with the rows, or neither does.
            async with conn.transaction():
                count = await importer.import_rows(conn, args.kind, rows, progress)
                await record.ok(conn, format=fmt, rows=count)
            record.recorded = True
            return count
        finally:
            progress.close()
            await conn.close()

    rows: Sequence[Row] | None = None
    try:
        # The whole file is checked before the database is even contacted.
        rows = parse(args.kind, decode(data, name), file=name, fmt=fmt)
        count = _run(f"emergency import: {name}: nothing imported", main(rows))
    except InvalidRows as exc:
        found = f"{len(exc.errors)}{'+' if exc.truncated else ''}"
        message = f"emergency import: {name}: nothing imported; {found} error(s):\n{exc}"
        record.failed(
            message,
            format=fmt,
            rows=None if rows is None else len(rows),
            errors=len(exc.errors),
            truncated=exc.truncated,
        )
        raise SystemExit(message) from None
    except SystemExit as exc:
        record.failed(str(exc.code), format=fmt, rows=None if rows is None else len(rows))
        raise
    print(f"imported {count} {args.kind} from {name}")


class _NotAudited(Exception):
    """The roads were imported (committed), and then their audit entry could not be written."""

    def __init__(self, count: int, reason: Exception) -> None:
        super().__init__(count, reason)
        self.count = count
        self.reason = reason


def _import_roads(url: str, path: Path, mapconfig: Path | None, record: ImportAudit) -> None:
    progress = RoadProgress()

    async def main() -> int:
        conn = await _connect(url)
        ticker = asyncio.create_task(progress.tick_every(1.0), name="road-import-progress")
        done = False
        try:
            count = await importer.import_roads(conn, url, path, mapconfig=mapconfig, progress=progress)
            done = True
            # osm2pgrouting committed on a connection of its own: no shared
            # transaction to join (as over HTTP).
            try:
                await record.ok(conn, rows=count)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise _NotAudited(count, exc) from None
            record.recorded = True
            return count
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            progress.close(done=done)
            await conn.close()

    try:
        count = _run(f"emergency import roads: {path}: nothing imported", main())
    except importer.RoadImportError as exc:
        raise SystemExit(f"emergency import roads: {exc}") from None
    except _NotAudited as exc:
        record.recorded = True  # the roads were replaced: no "failed" entry either
        raise SystemExit(
            f"emergency import roads: imported {exc.count} road edges from {path}, "
            f"but the audit log could not record it: {exc.reason}"
        ) from None
    print(f"imported {count} road edges from {path} (the road network was replaced)")


def cmd_export(args: argparse.Namespace, settings: Settings) -> None:
    url = _database_url(settings)
    to_stdout = str(args.file) == "-"
    if to_stdout and args.format is None:
        raise SystemExit(
            "emergency export: writing to standard output needs --format csv or --format geojson"
        )
    fmt = _format(args, str(args.file))
    if args.kind == "roads":
        if fmt != "geojson":
            raise SystemExit("emergency export roads: roads are exported as GeoJSON only")
        _export_roads(url, None if to_stdout else args.file)
        return

    async def main() -> tuple[str, int]:
        conn = await _connect(url)
        try:
            rows = await importer.export_rows(conn, args.kind)
        finally:
            await conn.close()
        return dump(args.kind, rows, fmt), len(rows)

    text, count = _run(f"emergency export {args.kind}", main())
    if to_stdout:
        sys.stdout.write(text)
        return
    path: Path = args.file
    # Write beside, then rename: an interrupted export never leaves half a file.
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise SystemExit(f"emergency export: cannot write {path}: {exc.strerror}") from None
    print(f"exported {count} {args.kind} to {path}", file=sys.stderr)


class _WriteFailed(Exception):
    """Writing the export failed (not the database: ``_run`` reads OSError as that)."""


def _export_roads(url: str, path: Path | None) -> None:
    """The road graph as GeoJSON to ``path`` (written beside, then renamed), or standard output."""
    partial = None if path is None else path.with_name(path.name + ".partial")

    async def main() -> int:
        conn = await _connect(url)
        try:
            with contextlib.ExitStack() as files:
                try:
                    out = (
                        sys.stdout
                        if partial is None
                        else files.enter_context(partial.open("w", encoding="utf-8"))
                    )
                    async with contextlib.aclosing(importer.export_roads(conn)) as pieces:
                        async for piece in pieces:
                            out.write(piece)
                except OSError as exc:
                    raise _WriteFailed(exc.strerror) from None
            # For the message only: a road import committing meanwhile could make it differ.
            count: int = await conn.fetchval("SELECT count(*) FROM roads")
            return count
        finally:
            await conn.close()

    try:
        count = _run("emergency export roads", main())
        if path is not None and partial is not None:
            os.replace(partial, path)
    except (_WriteFailed, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc
        raise SystemExit(
            f"emergency export roads: cannot write {path or 'standard output'}: {reason}"
        ) from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    if path is not None:
        print(f"exported {count} road edges to {path}", file=sys.stderr)


def add_import_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` and ``export`` to the ``emergency`` command's subparsers."""
    imp = subparsers.add_parser(
        "import",
        help="import the city's data from CSV or GeoJSON (roads: OpenStreetMap)",
        description="Validate every row, then store all of them in one transaction or none. "
        "Rows are matched on their id: new ones are added, existing ones updated, so "
        "importing the same file again changes nothing. Roads replace the whole network.",
    )
    imp.add_argument("kind", choices=(*KINDS, "roads"))
    imp.add_argument("file", type=Path, help="a .csv, .geojson or .json file; roads: .osm or .osm.pbf")
    imp.add_argument("--format", choices=("csv", "geojson"), help="override the extension")
    imp.add_argument(
        "--mapconfig",
        type=Path,
        help=f"roads only: osm2pgrouting's configuration (default {importer.CAR_MAPCONFIG})",
    )
    imp.set_defaults(func=cmd_import)

    exp = subparsers.add_parser(
        "export", help="export the city's data as CSV or GeoJSON, in the format import reads"
    )
    exp.add_argument("kind", choices=(*KINDS, "roads"))
    exp.add_argument(
        "file",
        type=Path,
        help="a .csv, .geojson or .json file, or - for standard output; roads: GeoJSON only",
    )
    exp.add_argument("--format", choices=("csv", "geojson"), help="override the extension")
    exp.set_defaults(func=cmd_export)
