"""The city's data as files: parse and validate CSV/GeoJSON, and write them back.

Pure: no I/O library. ``parse()`` turns the text of one file into frozen rows
of one kind, checking every row and collecting what is wrong (up to
``MAX_ERRORS``) as ``RowError``s naming file, row and field; ``dump()`` writes
rows in the same format, so ``parse(dump(rows)) == rows``. The SQL that stores
and reads rows is in ``command/importer.py``; formats are described in
docs/import.md.

Rows are numbered as a person looking at the file would find them: a CSV row is
its line number (the header is line 1, so the first data row is row 2); a
GeoJSON feature is its index in ``features`` (from 0).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Literal

import shapely
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Point, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

from dispatch.units import CAPABILITIES, CAPABILITIES_OF_TYPE, SUPPLY_ITEMS, UNIT_STATUSES

Format = Literal["csv", "geojson"]

#: Importable kinds, in an order that satisfies their references
#: (units, depots and sensors may name a district; stock names a depot).
KINDS: tuple[str, ...] = ("districts", "units", "depots", "stock", "hazards", "sites", "sensors")

#: Parsing stops collecting after this many errors: by then the file is
#: clearly wrong, and a person reads the first few anyway.
MAX_ERRORS = 50

_INT4_MAX = 2**31 - 1
# The CHECK on units.id and sensors.id.
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TOKEN_RULE = "1 to 64 letters, digits or _.:-"
_WHOLE = re.compile(r"[+-]?[0-9]+")


# --- errors -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowError:
    """One thing wrong with an input file.

    ``row`` is None for what concerns the whole file (not JSON, wrong shape);
    ``field`` is None for what concerns a whole row.
    """

    file: str
    row: int | None
    field: str | None
    message: str
    label: str = "row"  # "row" (a CSV line) or "feature" (a GeoJSON index)

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f": {self.label} {self.row}"
        if self.field is not None:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class InvalidRows(Exception):
    """The file cannot be imported; ``errors`` says every reason found (up to ``MAX_ERRORS``)."""

    def __init__(self, errors: Sequence[RowError], *, truncated: bool = False) -> None:
        self.errors = tuple(errors)
        self.truncated = truncated
        lines = [str(e) for e in self.errors]
        if truncated:
            lines.append(f"(stopped after {len(self.errors)} errors)")
        super().__init__("\n".join(lines))


class _Bad(Exception):
    """A value is wrong; the parser adds file, row and field."""


class _TooMany(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a row came from, so that later checks (in SQL) can name it."""

    file: str
    row: int
    label: str = "row"

    def error(self, field_name: str | None, message: str) -> RowError:
        return RowError(self.file, self.row, field_name, message, self.label)


class _Errors:
    def __init__(self, limit: int) -> None:
        self.items: list[RowError] = []
        self.limit = limit

    def add(self, error: RowError) -> None:
        self.items.append(error)
        if len(self.items) >= self.limit:
            raise _TooMany


# --- rows -------------------------------------------------------------------
# Each row type mirrors its table; ``origin`` takes no part in equality, so
# rows read back from the database compare equal to the rows of the file.


@dataclass(frozen=True, slots=True)
class DistrictRow:
    origin: Origin = field(compare=False, repr=False)
    id: str
    name: str
    name_zh: str | None
    geom: MultiPolygon


@dataclass(frozen=True, slots=True)
class UnitRow:
    origin: Origin = field(compare=False, repr=False)
    id: str
    callsign: str
    type: str
    capabilities: tuple[str, ...]
    crew: int
    station: str | None
    district_id: str | None  # None: the district containing ``home``, if any
    status: str | None  # None: 'available' for a new unit, unchanged for an existing one
    home: Point | None


@dataclass(frozen=True, slots=True)
class DepotRow:
    origin: Origin = field(compare=False, repr=False)
    id: str
    name: str
    district_id: str | None
    location: Point


@dataclass(frozen=True, slots=True)
class StockRow:
    origin: Origin = field(compare=False, repr=False)
    depot_id: str
    item: str
    quantity: Decimal
    unit: str
    expires_on: date | None


@dataclass(frozen=True, slots=True)
class HazardRow:
    origin: Origin = field(compare=False, repr=False)
    id: str
    kind: str
    name: str
    attrs: Mapping[str, Any] = field(hash=False)
    geom: BaseGeometry


@dataclass(frozen=True, slots=True)
class SiteRow:
    origin: Origin = field(compare=False, repr=False)
    id: str
    kind: str
    name: str
    capacity: int | None
    beds: int | None
    attrs: Mapping[str, Any] = field(hash=False)
    geom: BaseGeometry


@dataclass(frozen=True, slots=True)
class SensorRow:
    origin: Origin = field(compare=False, repr=False)
    id: str
    kind: str
    name: str | None
    district_id: str | None
    heartbeat_s: int | None  # None: 600 for a new sensor, unchanged for an existing one
    location: Point | None


Row = DistrictRow | UnitRow | DepotRow | StockRow | HazardRow | SiteRow | SensorRow


# --- value converters: raw (CSV text or a JSON value) -> typed, or _Bad -------


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: object) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise _Bad(f"must be text, got {value!r}")
    return value.strip()


def _token(value: object) -> str | None:
    text = _text(value)
    if text is not None and not _TOKEN.fullmatch(text):
        raise _Bad(f"must be {_TOKEN_RULE}, got {text!r}")
    return text


def _whole(minimum: int) -> Callable[[object], int | None]:
    rule = (
        f"must be a whole number >= {minimum}" if minimum == 0 else f"must be a whole number > {minimum - 1}"
    )

    def convert(value: object) -> int | None:
        if _blank(value):
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and _WHOLE.fullmatch(value.strip())
        ):
            number = int(value)
        if number is None or number < minimum:
            raise _Bad(f"{rule}, got {value!r}")
        if number > _INT4_MAX:
            raise _Bad(f"must be at most {_INT4_MAX}, got {value!r}")
        return number

    return convert


def _quantity(value: object) -> Decimal | None:
    if _blank(value):
        return None
    number: Decimal | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite() or number < 0:
        raise _Bad(f"must be a number >= 0, got {value!r}")
    return number


def _iso_date(value: object) -> date | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Bad(f"must be an ISO 8601 date (YYYY-MM-DD), got {text!r}") from None


def _status(value: object) -> str | None:
    text = _text(value)
    if text is not None and text not in UNIT_STATUSES:
        raise _Bad(f"must be one of {', '.join(UNIT_STATUSES)}, got {text!r}")
    return text


def _capabilities(value: object) -> tuple[str, ...]:
    if _blank(value):
        return ()
    if isinstance(value, str):
        items: list[object] = list(value.split(";"))
    elif isinstance(value, list):
        items = list(value)
    else:
        raise _Bad(f"must be a list of capabilities (in CSV: separated by ';'), got {value!r}")
    result: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip() and isinstance(value, str):
            continue  # 'a;;b' or a trailing ';'
        # Only what a response plan can ask for: a misspelt capability would
        # otherwise leave the unit silently never dispatched for it.
        if not isinstance(item, str) or item.strip() not in CAPABILITIES:
            raise _Bad(f"each capability must be one of {', '.join(CAPABILITIES)}, got {item!r}")
        if item.strip() not in result:
            result.append(item.strip())
    return tuple(result)


def _attrs(value: object) -> Mapping[str, Any]:
    if _blank(value):
        return MappingProxyType({})
    if isinstance(value, str):  # CSV: JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Bad(f"must be a JSON object, got invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise _Bad(f"must be a JSON object, got {value!r}")
    return MappingProxyType(dict(value))


def _coordinate(value: object, name: str, limit: int) -> float | None:
    if _blank(value):
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not -limit <= number <= limit:
        raise _Bad(f"must be a {name} between -{limit} and {limit} (WGS 84 degrees), got {value!r}")
    return number


# --- what each kind looks like ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    convert: Callable[[object], Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class _Spec:
    row_type: type[Any]
    fields: tuple[_Field, ...]  # every attribute but origin and the geometry, in column order
    geometry: str | None  # the attribute holding the geometry
    shapes: tuple[str, ...] = ()  # allowed geometry types
    geometry_required: bool = True
    key: tuple[str, ...] = ("id",)
    # Rules across fields, once every field converted: may complete the
    # values, returns (field, message) for what is wrong.
    finish: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None

    @property
    def points_only(self) -> bool:
        return self.shapes == ("Point",)

    def csv_columns(self) -> tuple[str, ...]:
        columns = tuple(f.name for f in self.fields)
        if self.geometry is None:
            return columns
        if self.points_only:
            return (*columns, "lat", "lon")
        if "Point" in self.shapes:
            return (*columns, "lat", "lon", "wkt")
        return (*columns, "wkt")

    def accepted_columns(self) -> tuple[str, ...]:
        columns = self.csv_columns()
        return columns if self.geometry is None or self.points_only else (*columns, "geometry")


def _finish_unit(values: dict[str, Any]) -> list[tuple[str, str]]:
    if not values["capabilities"]:
        values["capabilities"] = CAPABILITIES_OF_TYPE.get(values["type"], ())
    return []


def _finish_stock(values: dict[str, Any]) -> list[tuple[str, str]]:
    # Plans add up a supply across depots, so one item has one unit of measure.
    expected = SUPPLY_ITEMS.get(values["item"])
    if expected is not None and values["unit"] != expected:
        return [
            (
                "unit",
                f"must be {expected!r}: {values['item']} is counted in {expected!r}, got {values['unit']!r}",
            )
        ]
    return []


_POLYGONS = ("Polygon", "MultiPolygon")
_AREAS = ("Point", "Polygon", "MultiPolygon")

SPECS: Mapping[str, _Spec] = MappingProxyType(
    {
        "districts": _Spec(
            DistrictRow,
            (_Field("id", _text, True), _Field("name", _text, True), _Field("name_zh", _text)),
            "geom",
            _POLYGONS,
        ),
        "units": _Spec(
            UnitRow,
            (
                _Field("id", _token, True),
                _Field("callsign", _text, True),
                _Field("type", _text, True),
                _Field("capabilities", _capabilities),
                _Field("crew", _whole(0)),
                _Field("station", _text),
                _Field("district_id", _text),
                _Field("status", _status),
            ),
            "home",
            ("Point",),
            geometry_required=False,
            finish=_finish_unit,
        ),
        "depots": _Spec(
            DepotRow,
            (_Field("id", _text, True), _Field("name", _text, True), _Field("district_id", _text)),
            "location",
            ("Point",),
        ),
        "stock": _Spec(
            StockRow,
            (
                _Field("depot_id", _text, True),
                _Field("item", _text, True),
                _Field("quantity", _quantity, True),
                _Field("unit", _text, True),
                _Field("expires_on", _iso_date),
            ),
            None,
            key=("depot_id", "item"),
            finish=_finish_stock,
        ),
        "hazards": _Spec(
            HazardRow,
            (
                _Field("id", _text, True),
                _Field("kind", _text, True),
                _Field("name", _text, True),
                _Field("attrs", _attrs),
            ),
            "geom",
            _AREAS,
        ),
        "sites": _Spec(
            SiteRow,
            (
                _Field("id", _text, True),
                _Field("kind", _text, True),
                _Field("name", _text, True),
                _Field("capacity", _whole(0)),
                _Field("beds", _whole(0)),
                _Field("attrs", _attrs),
            ),
            "geom",
            _AREAS,
        ),
        "sensors": _Spec(
            SensorRow,
            (
                _Field("id", _token, True),
                _Field("kind", _text, True),
                _Field("name", _text),
                _Field("district_id", _text),
                _Field("heartbeat_s", _whole(1)),
            ),
            "location",
            ("Point",),
            geometry_required=False,
        ),
    }
)

# Defaults for optional fields left blank (None stays None otherwise).
_DEFAULTS: Mapping[str, object] = MappingProxyType({"crew": 0})


def format_of(name: str) -> Format | None:
    """The format a file name's extension says: 'csv', 'geojson' (.geojson, .json), or None."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".geojson", ".json")):
        return "geojson"
    return None


# --- geometry -----------------------------------------------------------------


def _check_geometry(geom: BaseGeometry, spec: _Spec) -> BaseGeometry:
    """Type, emptiness, WGS 84 range and validity; Z dropped; districts made multi."""
    if geom.geom_type not in spec.shapes:
        raise _Bad(f"must be a {' or '.join(spec.shapes)}, got {geom.geom_type}")
    if geom.is_empty:
        raise _Bad("is empty")
    geom = shapely.force_2d(geom)
    west, south, east, north = geom.bounds
    if not all(map(math.isfinite, geom.bounds)) or west < -180 or east > 180 or south < -90 or north > 90:
        raise _Bad(
            "has coordinates outside WGS 84 (longitude -180..180, latitude -90..90); "
            "projected coordinates must be converted to longitude/latitude first"
        )
    if not geom.is_valid:
        raise _Bad(f"is not a valid {geom.geom_type}: {shapely.is_valid_reason(geom)}")
    if spec.shapes == _POLYGONS and isinstance(geom, Polygon):
        geom = MultiPolygon([geom])
    return geom


def _geojson_geometry(value: object) -> BaseGeometry:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _Bad(f"must be a GeoJSON geometry object, got {_short(value)}")
    try:
        return shape(value)
    except KeyError as exc:
        raise _Bad(f"is not a valid GeoJSON {value['type']}: {exc} is missing") from None
    except (GEOSException, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise _Bad(f"is not a valid GeoJSON {value['type']}: {exc}") from None


def _wkt(text: str) -> BaseGeometry:
    match = re.match(r"\s*SRID=(\d+);", text, re.IGNORECASE)
    if match:
        if match.group(1) != "4326":
            raise _Bad(f"must be in WGS 84 (SRID 4326), got SRID {match.group(1)}")
        text = text[match.end() :]
    try:
        return shapely.from_wkt(text)
    except GEOSException as exc:
        raise _Bad(f"is not valid WKT: {exc}") from None


def _short(value: object, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- parsing ------------------------------------------------------------------


def decode(data: bytes, file: str) -> str:
    """UTF-8 bytes (an optional byte-order mark is dropped) -> text.

    Raises:
        InvalidRows: the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRows(
            [RowError(file, None, None, f"is not UTF-8 text (bad byte at offset {exc.start})")]
        ) from None


def parse(kind: str, text: str, *, file: str, fmt: Format, max_errors: int = MAX_ERRORS) -> tuple[Row, ...]:
    """Validate every row of one file and return them, or raise with every error found.

    Args:
        kind: one of ``KINDS``.
        text: the file's text.
        file: the name errors use (a file name, or what a request calls its body).
        fmt: 'csv' or 'geojson'.
        max_errors: stop collecting errors after this many.

    Returns:
        The rows, in file order.

    Raises:
        ValueError: ``kind`` or ``fmt`` is unknown (a programming error).
        InvalidRows: anything is wrong with the file; nothing of it should be stored.
    """
    spec = SPECS.get(kind)
    if spec is None:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if fmt not in ("csv", "geojson"):
        raise ValueError(f"unknown format {fmt!r}")
    errors = _Errors(max_errors)
    rows: list[Row] = []
    try:
        records = (
            _csv_records(spec, text, file, errors)
            if fmt == "csv"
            else _geojson_records(spec, text, file, errors)
        )
        for origin, raw, geometry in records:
            row = _build(spec, origin, raw, geometry, errors)
            if row is not None:
                rows.append(row)
        _check_duplicates(spec, rows, errors)
    except _TooMany:
        raise InvalidRows(errors.items, truncated=True) from None
    if errors.items:
        raise InvalidRows(errors.items)
    return tuple(rows)


# A record's geometry as found: the field it came from, and the parsed
# geometry, None when there is none, or what is wrong with it.
_Geometry = tuple[str, BaseGeometry | _Bad | None]
# A record on its way to a row: where it is, its field values as found, its geometry.
_Record = tuple[Origin, dict[str, object], _Geometry]


def _build(
    spec: _Spec, origin: Origin, raw: Mapping[str, object], geometry: _Geometry, errors: _Errors
) -> Row | None:
    values: dict[str, Any] = {"origin": origin}
    ok = True
    for f in spec.fields:
        try:
            value = f.convert(raw.get(f.name))
        except _Bad as exc:
            errors.add(origin.error(f.name, str(exc)))
            ok = False
            continue
        if value is None and f.required:
            errors.add(origin.error(f.name, "is required"))
            ok = False
        values[f.name] = _DEFAULTS.get(f.name) if value is None and f.name in _DEFAULTS else value
    field_name, geom = geometry
    if isinstance(geom, _Bad):
        errors.add(origin.error(field_name, str(geom)))
        ok = False
    elif spec.geometry is not None:
        if geom is None:
            if spec.geometry_required:
                errors.add(origin.error(field_name, "is required"))
                ok = False
            values[spec.geometry] = None
        else:
            try:
                values[spec.geometry] = _check_geometry(geom, spec)
            except _Bad as exc:
                errors.add(origin.error(field_name, str(exc)))
                ok = False
    if not ok:
        return None
    for field_name, message in spec.finish(values) if spec.finish else ():
        errors.add(origin.error(field_name, message))
        ok = False
    return spec.row_type(**values) if ok else None


def _check_duplicates(spec: _Spec, rows: Sequence[Row], errors: _Errors) -> None:
    seen: dict[tuple[object, ...], Origin] = {}
    for row in rows:
        key = tuple(getattr(row, k) for k in spec.key)
        first = seen.setdefault(key, row.origin)
        if first is not row.origin:
            shown = ", ".join(f"{k} {v!r}" for k, v in zip(spec.key, key, strict=True))
            errors.add(
                row.origin.error(spec.key[-1], f"duplicate {shown} (also at {first.label} {first.row})")
            )


def _csv_records(spec: _Spec, text: str, file: str, errors: _Errors) -> Iterator[_Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        errors.add(RowError(file, 1, None, f"is not valid CSV: {exc}"))
        return
    columns = [c.strip().lower() for c in header]
    accepted = spec.accepted_columns()
    bad_header = False
    if not any(columns):
        errors.add(
            RowError(
                file,
                None,
                None,
                f"is empty; the first line must name the columns: {', '.join(spec.csv_columns())}",
            )
        )
        return
    for i, column in enumerate(columns):
        if column not in accepted:
            errors.add(RowError(file, 1, column, f"unknown column; expected some of: {', '.join(accepted)}"))
            bad_header = True
        elif column in columns[:i]:
            errors.add(RowError(file, 1, column, "column appears twice"))
            bad_header = True
    for f in spec.fields:
        if f.required and f.name not in columns:
            errors.add(RowError(file, 1, f.name, "required column is missing"))
            bad_header = True
    if spec.geometry is not None and spec.geometry_required:
        if spec.points_only:
            for name in ("lat", "lon"):
                if name not in columns:
                    errors.add(RowError(file, 1, name, "required column is missing"))
                    bad_header = True
        elif not {"lat", "lon", "wkt", "geometry"} & set(columns):
            names = (
                "'lat' and 'lon', 'wkt' or 'geometry'" if "Point" in spec.shapes else "'wkt' or 'geometry'"
            )
            errors.add(RowError(file, 1, "wkt", f"required column is missing: give {names}"))
            bad_header = True
    if bad_header:
        return  # every row would repeat the header's problem
    line = reader.line_num
    while True:
        start = line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.add(RowError(file, start, None, f"is not valid CSV: {exc}"))
            return
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not rows
        origin = Origin(file, start)
        if len(record) != len(columns):
            errors.add(origin.error(None, f"has {len(record)} fields; the header has {len(columns)}"))
            continue
        raw: dict[str, object] = dict(zip(columns, record, strict=True))
        yield origin, raw, _csv_geometry(spec, raw)


def _csv_geometry(spec: _Spec, raw: Mapping[str, object]) -> _Geometry:
    if spec.geometry is None:
        return ("", None)
    given = [name for name in ("lat", "lon", "wkt", "geometry") if not _blank(raw.get(name))]
    point = "lat" in given or "lon" in given
    default_field = "lat" if spec.points_only or ("Point" in spec.shapes and point) else "wkt"
    if point + ("wkt" in given) + ("geometry" in given) > 1:
        return ("wkt", _Bad("give only one of: lat/lon, wkt, geometry"))
    if not given:
        if spec.geometry_required and not spec.points_only:
            needed = "lat and lon, or wkt" if "Point" in spec.shapes else "wkt"
            return (default_field, _Bad(f"is required: give {needed}"))
        return (default_field, None)
    if point:
        try:
            lat = _coordinate(raw.get("lat"), "latitude", 90)
        except _Bad as exc:
            return ("lat", exc)
        try:
            lon = _coordinate(raw.get("lon"), "longitude", 180)
        except _Bad as exc:
            return ("lon", exc)
        if lat is None:
            return ("lat", _Bad("is required when 'lon' is given"))
        if lon is None:
            return ("lon", _Bad("is required when 'lat' is given"))
        return ("lat", Point(lon, lat))
    if "wkt" in given:
        try:
            return ("wkt", _wkt(str(raw["wkt"])))
        except _Bad as exc:
            return ("wkt", exc)
    try:
        value = json.loads(str(raw["geometry"]))
    except json.JSONDecodeError as exc:
        return (
            "geometry",
            _Bad(f"must be GeoJSON geometry text, got invalid JSON ({exc.msg} at column {exc.colno})"),
        )
    try:
        return ("geometry", _geojson_geometry(value))
    except _Bad as exc:
        return ("geometry", exc)


def _geojson_records(spec: _Spec, text: str, file: str, errors: _Errors) -> Iterator[_Record]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.add(
            RowError(
                file, None, None, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            )
        )
        return
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "FeatureCollection"
        or not isinstance(doc.get("features"), list)
    ):
        errors.add(
            RowError(
                file,
                None,
                None,
                'must be a GeoJSON FeatureCollection: {"type": "FeatureCollection", "features": [...]}',
            )
        )
        return
    crs = doc.get("crs")
    if crs is not None and not _is_wgs84(crs):
        errors.add(
            RowError(
                file, None, None, f"must be in WGS 84 longitude/latitude (RFC 7946), got crs {_short(crs)}"
            )
        )
        return
    accepted = {f.name for f in spec.fields}
    for index, feature in enumerate(doc["features"]):
        origin = Origin(file, index, "feature")
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            errors.add(
                origin.error(
                    None, f'must be a GeoJSON Feature ({{"type": "Feature", ...}}), got {_short(feature)}'
                )
            )
            continue
        properties = feature.get("properties")
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            errors.add(origin.error("properties", f"must be an object, got {_short(properties)}"))
            continue
        raw: dict[str, object] = dict(properties)
        unknown = [name for name in raw if name not in accepted]
        for name in unknown:
            errors.add(
                origin.error(name, f"unknown property; expected some of: {', '.join(sorted(accepted))}")
            )
        if unknown:
            continue
        if "id" in accepted and "id" in feature and feature["id"] is not None:
            if _blank(raw.get("id")):
                raw["id"] = feature["id"]
            elif feature["id"] != raw["id"]:
                errors.add(
                    origin.error(
                        "id", f"the feature's id {feature['id']!r} differs from its property {raw['id']!r}"
                    )
                )
                continue
        yield origin, raw, _feature_geometry(spec, feature.get("geometry"))


def _feature_geometry(spec: _Spec, value: object) -> _Geometry:
    if spec.geometry is None:
        if value is not None:
            return ("geometry", _Bad("must be null: stock has no location of its own (it is at its depot)"))
        return ("", None)
    if value is None:
        return ("geometry", None)
    try:
        return ("geometry", _geojson_geometry(value))
    except _Bad as exc:
        return ("geometry", exc)


def _is_wgs84(crs: object) -> bool:
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) else None
    return isinstance(name, str) and name.upper().replace("::", ":") in (
        "URN:OGC:DEF:CRS:OGC:1.3:CRS84",
        "EPSG:4326",
        "URN:OGC:DEF:CRS:EPSG:4326",
    )


# --- writing ------------------------------------------------------------------


def dump(kind: str, rows: Iterable[Row], fmt: Format) -> str:
    """Rows of ``kind`` as the text of a CSV or GeoJSON file that ``parse`` reads back equal."""
    spec = SPECS[kind]
    return _dump_csv(spec, rows) if fmt == "csv" else _dump_geojson(spec, rows)


def _plain(value: object) -> object:
    """A row value as JSON: tuples as lists, dates as ISO text, exact numbers."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        # A float when it reads back to the same value, else the exact text.
        if value == value.to_integral_value():
            return int(value)
        return float(value) if Decimal(repr(float(value))) == value else format(value, "f")
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _dump_geojson(spec: _Spec, rows: Iterable[Row]) -> str:
    features = []
    for row in rows:
        properties = {f.name: _plain(getattr(row, f.name)) for f in spec.fields}
        geom = getattr(row, spec.geometry) if spec.geometry else None
        feature: dict[str, object] = {"type": "Feature"}
        if "id" in properties:
            feature["id"] = properties["id"]
        feature["geometry"] = mapping(geom) if geom is not None else None
        feature["properties"] = properties
        features.append(json.dumps(feature, ensure_ascii=False))
    # One feature per line: readable, and diffs of two exports stay small.
    body = ",\n".join(features)
    return '{"type": "FeatureCollection", "features": [\n' + body + ("\n" if features else "") + "]}\n"


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ";".join(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), ensure_ascii=False) if value else ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _exact_wkt(geom: BaseGeometry) -> str:
    """WKT of a (Multi)Polygon with every coordinate as repr() writes it.

    GEOS's writer rounds to a number of decimals, so a boundary would move a
    little on every export/import round trip; repr() reads back exactly.
    """

    def ring(coords: Any) -> str:
        return "(" + ", ".join(f"{c[0]!r} {c[1]!r}" for c in coords) + ")"

    def polygon(p: Polygon) -> str:
        return "(" + ", ".join(ring(r.coords) for r in (p.exterior, *p.interiors)) + ")"

    if isinstance(geom, Polygon):
        return "POLYGON " + polygon(geom)
    if isinstance(geom, MultiPolygon):
        return "MULTIPOLYGON (" + ", ".join(polygon(p) for p in geom.geoms) + ")"
    raise ValueError(f"no exact WKT writer for {geom.geom_type}")


def _dump_csv(spec: _Spec, rows: Iterable[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = spec.csv_columns()
    writer.writerow(columns)
    for row in rows:
        cells = {f.name: _csv_cell(getattr(row, f.name)) for f in spec.fields}
        geom = getattr(row, spec.geometry) if spec.geometry else None
        if isinstance(geom, Point):
            cells["lat"], cells["lon"] = repr(geom.y), repr(geom.x)
        elif geom is not None:
            cells["wkt"] = _exact_wkt(geom)
        writer.writerow([cells.get(c, "") for c in columns])
    return out.getvalue()
