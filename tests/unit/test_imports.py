"""Import files: every validation rule names file, row and field; dump() reads back equal."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from shapely.geometry import MultiPolygon, Point, Polygon, shape

from command.demo_city import City, build_city
from command.imports import (
    KINDS,
    MAX_ERRORS,
    DepotRow,
    DistrictRow,
    Format,
    HazardRow,
    InvalidRows,
    Origin,
    Row,
    RowError,
    SensorRow,
    SiteRow,
    StockRow,
    UnitRow,
    decode,
    dump,
    format_of,
    parse,
)

CAPS = "fire_suppression, water_rescue, medical, hazmat, traffic_control, rescue, power, epidemiology, search"
UNITS_HEADER = "id,callsign,type,capabilities,crew,station,district_id,status,lat,lon"
GOOD_UNIT = "U-1,Engine 1,fire_engine,fire_suppression;rescue,4,Station 1,D-1,available,30.27,120.15"


def errors_of(kind: str, text: str, fmt: Format = "csv", file: str | None = None) -> list[str]:
    file = file or f"{kind}.{'csv' if fmt == 'csv' else 'geojson'}"
    with pytest.raises(InvalidRows) as caught:
        parse(kind, text, file=file, fmt=fmt)
    return [str(e) for e in caught.value.errors]


def units_csv(*rows: str, header: str = UNITS_HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


def collection(*features: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features), **extra})


def feature(
    properties: dict[str, Any], geometry: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties, **extra}


def csv_quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


SQUARE = {
    "type": "Polygon",
    "coordinates": [[[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1], [120.0, 30.0]]],
}


# --- CSV: units -------------------------------------------------------------------


def test_a_good_units_csv_parses_to_rows() -> None:
    (unit,) = parse("units", units_csv(GOOD_UNIT), file="units.csv", fmt="csv")
    assert unit == UnitRow(
        Origin("units.csv", 2),
        id="U-1",
        callsign="Engine 1",
        type="fire_engine",
        capabilities=("fire_suppression", "rescue"),
        crew=4,
        station="Station 1",
        district_id="D-1",
        status="available",
        home=Point(120.15, 30.27),
    )
    assert unit.origin == Origin("units.csv", 2)


def test_the_row_is_the_csv_line_number() -> None:
    rows = [GOOD_UNIT.replace("U-1", f"U-{n}") for n in range(1, 6)]
    rows.append("U-6,Engine 6,fire_engine,,three,,,,30.27,120.15")
    assert errors_of("units", units_csv(*rows)) == [
        "units.csv: row 7, field 'crew': must be a whole number >= 0, got 'three'"
    ]


def test_every_error_of_every_row_is_reported() -> None:
    text = units_csv(
        GOOD_UNIT,
        "U-2,Engine 2,fire_engine,,-1,,,busy,91,120.1",
        "U 3,,x,water rescue,2.5,,,,30.2,",
    )
    assert errors_of("units", text) == [
        "units.csv: row 3, field 'crew': must be a whole number >= 0, got '-1'",
        "units.csv: row 3, field 'status': must be one of available, dispatched, en_route, on_scene, "
        "returning, out_of_service, got 'busy'",
        "units.csv: row 3, field 'lat': must be a latitude between -90 and 90 (WGS 84 degrees), got '91'",
        "units.csv: row 4, field 'id': must be 1 to 64 letters, digits or _.:-, got 'U 3'",
        "units.csv: row 4, field 'callsign': is required",
        f"units.csv: row 4, field 'capabilities': each capability must be one of {CAPS}, got 'water rescue'",
        "units.csv: row 4, field 'crew': must be a whole number >= 0, got '2.5'",
        "units.csv: row 4, field 'lon': is required when 'lat' is given",
    ]


def test_optional_unit_fields_may_be_blank_or_absent() -> None:
    (unit,) = parse("units", "id,callsign,type\nU-9, Rescue 9 ,boat\n", file="u.csv", fmt="csv")
    assert isinstance(unit, UnitRow)
    assert (unit.callsign, unit.capabilities, unit.crew, unit.station, unit.status, unit.home) == (
        "Rescue 9",
        (),
        0,
        None,
        None,
        None,
    )


def test_longitude_range_and_text_coordinates() -> None:
    assert errors_of("units", units_csv("U-1,E,t,,,,,,30,181", "U-2,E,t,,,,,,north,120")) == [
        "units.csv: row 2, field 'lon': must be a longitude between -180 and 180 (WGS 84 degrees), got '181'",
        "units.csv: row 3, field 'lat': must be a latitude between -90 and 90 (WGS 84 degrees), got 'north'",
    ]


def test_capabilities_are_semicolon_separated_and_deduplicated() -> None:
    (unit,) = parse("units", units_csv("U-1,E,t, rescue ; search;;rescue;,,,,,,"), file="u.csv", fmt="csv")
    assert isinstance(unit, UnitRow)
    assert unit.capabilities == ("rescue", "search")


def test_blank_capabilities_are_the_types_own() -> None:
    text = units_csv("U-1,E,hazmat_team,,,,,,,", "U-2,E,drone_team,,,,,,,", "U-3,E,hazmat_team,search,,,,,,")
    u1, u2, u3 = parse("units", text, file="u.csv", fmt="csv")
    assert isinstance(u1, UnitRow) and isinstance(u2, UnitRow) and isinstance(u3, UnitRow)
    assert (u1.capabilities, u2.capabilities, u3.capabilities) == (("hazmat", "rescue"), (), ("search",))


def test_capabilities_come_from_the_dispatch_vocabulary() -> None:
    assert errors_of("units", units_csv("U-1,E,t,fire_supression,,,,,,")) == [
        "units.csv: row 2, field 'capabilities': "
        f"each capability must be one of {CAPS}, got 'fire_supression'"
    ]


def test_known_supply_items_keep_their_unit_of_measure() -> None:
    text = (
        "depot_id,item,quantity,unit\nDEP-1,drinking_water,10,l\nDEP-1,chainsaws,2,pcs\nDEP-1,tents,3,pcs\n"
    )
    assert errors_of("stock", text) == [
        "stock.csv: row 2, field 'unit': must be 'L': drinking_water is counted in 'L', got 'l'"
    ]


def test_whole_numbers_fit_the_column() -> None:
    assert errors_of("units", units_csv("U-1,E,t,,2147483648,,,,,")) == [
        "units.csv: row 2, field 'crew': must be at most 2147483647, got '2147483648'"
    ]


# --- CSV: the file as a whole -------------------------------------------------------


def test_header_problems_are_reported_once_and_stop_the_rows() -> None:
    text = "id,callsign,crews,id,lat\nU-1,E,3,U-1,30\n"
    assert errors_of("units", text) == [
        "units.csv: row 1, field 'crews': unknown column; expected some of: id, callsign, type, "
        "capabilities, crew, station, district_id, status, lat, lon",
        "units.csv: row 1, field 'id': column appears twice",
        "units.csv: row 1, field 'type': required column is missing",
    ]


def test_header_names_ignore_case_and_spaces() -> None:
    (unit,) = parse("units", " ID ,Callsign,TYPE\nU-1,E,t\n", file="u.csv", fmt="csv")
    assert isinstance(unit, UnitRow)
    assert unit.id == "U-1"


def test_a_row_with_the_wrong_number_of_fields() -> None:
    assert errors_of("units", units_csv(GOOD_UNIT, "U-2,E,t")) == [
        "units.csv: row 3: has 3 fields; the header has 10"
    ]


def test_blank_lines_are_skipped_and_quoted_newlines_keep_line_numbers() -> None:
    text = units_csv(GOOD_UNIT, "", 'U-2,"Engine\n2",t,,,,,,,', "U-3,E,t,,x,,,,,")
    assert errors_of("units", text) == [
        "units.csv: row 6, field 'crew': must be a whole number >= 0, got 'x'"
    ]


def test_an_empty_file() -> None:
    assert errors_of("units", "") == [
        "units.csv: is empty; the first line must name the columns: id, callsign, type, capabilities, "
        "crew, station, district_id, status, lat, lon"
    ]


def test_duplicate_keys_in_one_file() -> None:
    assert errors_of("units", units_csv(GOOD_UNIT, GOOD_UNIT)) == [
        "units.csv: row 3, field 'id': duplicate id 'U-1' (also at row 2)"
    ]
    stock = "depot_id,item,quantity,unit\nDEP-1,water,1,l\nDEP-1,water,2,l\nDEP-2,water,2,l\n"
    assert errors_of("stock", stock) == [
        "stock.csv: row 3, field 'item': duplicate depot_id 'DEP-1', item 'water' (also at row 2)"
    ]


def test_collecting_stops_after_max_errors() -> None:
    rows = [f"U-{n},E,t,,bad,,,,," for n in range(MAX_ERRORS + 20)]
    with pytest.raises(InvalidRows) as caught:
        parse("units", units_csv(*rows), file="units.csv", fmt="csv")
    assert len(caught.value.errors) == MAX_ERRORS
    assert caught.value.truncated
    assert str(caught.value).endswith(f"(stopped after {MAX_ERRORS} errors)")


def test_decode_takes_utf8_with_or_without_bom() -> None:
    assert decode("\ufeffid,name\n".encode(), "f.csv") == "id,name\n"
    assert decode("名".encode(), "f.csv") == "名"
    with pytest.raises(InvalidRows) as caught:
        decode(b"id\n\xff\xfe", "f.csv")
    assert str(caught.value) == "f.csv: is not UTF-8 text (bad byte at offset 3)"


# --- CSV: the other kinds -------------------------------------------------------------


def test_stock_rules() -> None:
    text = (
        "depot_id,item,quantity,unit,expires_on\n"
        "DEP-1,water,120,l,2027-06-30\n"
        "DEP-1,tents,-1,pcs,31/12/2027\n"
        "DEP-1,rice,lots,,\n"
        ",blankets,2.5,pcs,\n"
    )
    assert errors_of("stock", text) == [
        "stock.csv: row 3, field 'quantity': must be a number >= 0, got '-1'",
        "stock.csv: row 3, field 'expires_on': must be an ISO 8601 date (YYYY-MM-DD), got '31/12/2027'",
        "stock.csv: row 4, field 'quantity': must be a number >= 0, got 'lots'",
        "stock.csv: row 4, field 'unit': is required",
        "stock.csv: row 5, field 'depot_id': is required",
    ]
    rows = parse(
        "stock",
        "depot_id,item,quantity,unit,expires_on\nDEP-1,water,12.50,l,2027-06-30\n",
        file="s",
        fmt="csv",
    )
    assert rows == (StockRow(Origin("s", 2), "DEP-1", "water", Decimal("12.5"), "l", date(2027, 6, 30)),)


def test_sensor_rules() -> None:
    text = "id,kind,name,heartbeat_s,lat,lon\nS-1,smoke,,60,30.2,120.1\nS-2,,x,0,,\nS/3,gas,,soon,,\n"
    assert errors_of("sensors", text) == [
        "sensors.csv: row 3, field 'kind': is required",
        "sensors.csv: row 3, field 'heartbeat_s': must be a whole number > 0, got '0'",
        "sensors.csv: row 4, field 'id': must be 1 to 64 letters, digits or _.:-, got 'S/3'",
        "sensors.csv: row 4, field 'heartbeat_s': must be a whole number > 0, got 'soon'",
    ]
    (sensor,) = parse("sensors", "id,kind\nS-9,gas\n", file="s", fmt="csv")
    assert isinstance(sensor, SensorRow)
    assert (sensor.heartbeat_s, sensor.location, sensor.district_id) == (None, None, None)


def test_depots_need_a_location() -> None:
    assert errors_of("depots", "id,name\nDEP-1,North\n") == [
        "depots.csv: row 1, field 'lat': required column is missing",
        "depots.csv: row 1, field 'lon': required column is missing",
    ]
    assert errors_of("depots", "id,name,lat,lon\nDEP-1,North,,\n") == [
        "depots.csv: row 2, field 'lat': is required"
    ]


def test_districts_from_wkt_or_geojson_text_become_multipolygons() -> None:
    text = (
        "id,name,name_zh,wkt,geometry\n"
        'D-1,West,西区,"POLYGON ((120 30, 120.1 30, 120.1 30.1, 120 30))",\n'
        f"D-2,East,,,{csv_quoted(json.dumps(SQUARE))}\n"
        'D-3,South,,"SRID=4326;MULTIPOLYGON (((120 30, 120.1 30, 120.1 30.1, 120 30)))",\n'
    )
    d1, d2, d3 = parse("districts", text, file="d.csv", fmt="csv")
    assert isinstance(d1, DistrictRow) and isinstance(d2, DistrictRow) and isinstance(d3, DistrictRow)
    assert d1.geom == MultiPolygon([Polygon([(120, 30), (120.1, 30), (120.1, 30.1), (120, 30)])])
    assert d1.name_zh == "西区"
    assert d2.geom.geom_type == "MultiPolygon"
    assert d3.geom == d1.geom


def test_district_geometry_rules() -> None:
    text = (
        "id,name,wkt,geometry\n"
        'D-1,Bowtie,"POLYGON ((120 30, 120.1 30.1, 120.1 30, 120 30.1, 120 30))",\n'
        'D-2,Projected,"POLYGON ((13358338 3503549, 13369470 3503549, 13369470 3516480, '
        '13358338 3503549))",\n'
        'D-3,Point,"POINT (120 30)",\n'
        'D-4,Mercator,"SRID=3857;POLYGON ((1 1, 2 1, 2 2, 1 1))",\n'
        "D-5,Garbled,POLYGON ((120 30,\n"
        'D-6,Both,"POLYGON ((120 30, 120.1 30, 120.1 30.1, 120 30))","{}"\n'
        "D-7,None,,\n"
        'D-8,BadJSON,,"{not json"\n'
        'D-9,Empty,"POLYGON EMPTY",\n'
    )
    errors = errors_of("districts", text)
    assert errors[:4] == [
        "districts.csv: row 2, field 'wkt': is not a valid Polygon: Self-intersection[120.05 30.05]",
        "districts.csv: row 3, field 'wkt': has coordinates outside WGS 84 (longitude -180..180, "
        "latitude -90..90); projected coordinates must be converted to longitude/latitude first",
        "districts.csv: row 4, field 'wkt': must be a Polygon or MultiPolygon, got Point",
        "districts.csv: row 5, field 'wkt': must be in WGS 84 (SRID 4326), got SRID 3857",
    ]
    assert errors[4].startswith("districts.csv: row 6, field 'wkt': is not valid WKT: ")
    assert errors[5:] == [
        "districts.csv: row 7, field 'wkt': give only one of: lat/lon, wkt, geometry",
        "districts.csv: row 8, field 'wkt': is required: give wkt",
        "districts.csv: row 9, field 'geometry': must be GeoJSON geometry text, got invalid JSON "
        "(Expecting property name enclosed in double quotes at column 2)",
        "districts.csv: row 10, field 'wkt': is empty",
    ]


def test_hazards_are_points_or_areas_with_json_attrs() -> None:
    text = (
        "id,kind,name,lat,lon,wkt,attrs\n"
        'H-1,chemical_plant,Plant,,,"POLYGON ((120 30, 120.1 30, 120.1 30.1, 120 30))","{""tonnes"": 40}"\n'
        "H-2,gas_station,Station,30.2,120.2,,\n"
    )
    h1, h2 = parse("hazards", text, file="h.csv", fmt="csv")
    assert isinstance(h1, HazardRow) and isinstance(h2, HazardRow)
    assert dict(h1.attrs) == {"tonnes": 40} and h1.geom.geom_type == "Polygon"
    assert h2.geom == Point(120.2, 30.2) and dict(h2.attrs) == {}
    bad = "id,kind,name,lat,lon,attrs\nH-1,x,y,30,120,[1]\nH-2,x,y,30,120,{oops\nH-3,x,y,,,\n"
    assert errors_of("hazards", bad) == [
        "hazards.csv: row 2, field 'attrs': must be a JSON object, got [1]",
        "hazards.csv: row 3, field 'attrs': must be a JSON object, got invalid JSON "
        "(Expecting property name enclosed in double quotes at column 2)",
        "hazards.csv: row 4, field 'wkt': is required: give lat and lon, or wkt",
    ]


def test_site_capacity_and_beds() -> None:
    text = (
        "id,kind,name,capacity,beds,lat,lon\n"
        "SITE-1,hospital,General,,-3,30,120\n"
        "SITE-2,school,No. 1,800,,30,120\n"
    )
    assert errors_of("sites", text) == [
        "sites.csv: row 2, field 'beds': must be a whole number >= 0, got '-3'"
    ]


# --- GeoJSON ----------------------------------------------------------------------------


def test_a_good_feature_collection() -> None:
    text = collection(
        feature(
            {"callsign": "Engine 1", "type": "fire_engine", "capabilities": ["fire_suppression"], "crew": 4},
            point(120.15, 30.27),
            id="U-1",
        ),
        feature({"id": "U-2", "callsign": "Boat", "type": "boat", "capabilities": None}),
    )
    u1, u2 = parse("units", text, file="units.geojson", fmt="geojson")
    assert isinstance(u1, UnitRow) and isinstance(u2, UnitRow)
    assert (u1.id, u1.capabilities, u1.crew, u1.home) == (
        "U-1",
        ("fire_suppression",),
        4,
        Point(120.15, 30.27),
    )
    assert (u2.id, u2.capabilities, u2.home) == ("U-2", (), None)
    assert u2.origin == Origin("units.geojson", 1, "feature")


def test_feature_errors_name_the_feature_index_and_property() -> None:
    text = collection(
        feature({"id": "U-1", "callsign": "E", "type": "t"}, point(120, 30)),
        feature(
            {"id": "U-2", "callsign": "E", "type": "t", "crew": "three", "capabilities": "rescue;search"}
        ),
        feature({"id": "U-3", "callsign": 7, "type": "t", "crew": True, "capabilities": [1]}),
        feature({"id": "U-4", "callsign": "E", "type": "t", "crews": 3}),
        feature({"id": "U-5", "callsign": "E", "type": "t"}, SQUARE),
        feature({"id": "U-6", "callsign": "E", "type": "t"}, point(200, 30)),
        feature({"id": "U-7", "callsign": "E", "type": "t", "capabilities": 3}, {"type": "Point"}),
        feature({"id": "U-8", "callsign": "E", "type": "t"}, id="U-9"),
        {"type": "Point", "coordinates": [1, 2]},
        feature([1, 2]),  # type: ignore[arg-type]  # deliberately not a dict: refused at run time
    )
    assert errors_of("units", text, "geojson") == [
        "units.geojson: feature 1, field 'crew': must be a whole number >= 0, got 'three'",
        "units.geojson: feature 2, field 'callsign': must be text, got 7",
        f"units.geojson: feature 2, field 'capabilities': each capability must be one of {CAPS}, got 1",
        "units.geojson: feature 2, field 'crew': must be a whole number >= 0, got True",
        "units.geojson: feature 3, field 'crews': unknown property; expected some of: callsign, "
        "capabilities, crew, district_id, id, station, status, type",
        "units.geojson: feature 4, field 'geometry': must be a Point, got Polygon",
        "units.geojson: feature 5, field 'geometry': has coordinates outside WGS 84 (longitude -180..180, "
        "latitude -90..90); projected coordinates must be converted to longitude/latitude first",
        "units.geojson: feature 6, field 'capabilities': must be a list of capabilities (in CSV: separated "
        "by ';'), got 3",
        "units.geojson: feature 6, field 'geometry': is not a valid GeoJSON Point: 'coordinates' is missing",
        "units.geojson: feature 7, field 'id': the feature's id 'U-9' differs from its property 'U-8'",
        'units.geojson: feature 8: must be a GeoJSON Feature ({"type": "Feature", ...}), got {\'type\': '
        "'Point', 'coordinates': [1, 2]}",
        "units.geojson: feature 9, field 'properties': must be an object, got [1, 2]",
    ]


def test_the_file_must_be_a_wgs84_feature_collection() -> None:
    assert errors_of("units", "{", "geojson") == [
        "units.geojson: is not valid JSON: "
        "Expecting property name enclosed in double quotes at line 1 column 2"
    ]
    assert errors_of("units", json.dumps({"type": "Feature"}), "geojson") == [
        'units.geojson: must be a GeoJSON FeatureCollection: {"type": "FeatureCollection", "features": [...]}'
    ]
    mercator = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    assert errors_of("units", collection(crs=mercator), "geojson") == [
        "units.geojson: must be in WGS 84 longitude/latitude (RFC 7946), got crs {'type': 'name', "
        "'properties': {'name': 'urn:ogc:def:crs:EPSG::3857'}}"
    ]
    crs84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    assert parse("units", collection(crs=crs84), file="u", fmt="geojson") == ()


def test_geojson_numbers_and_3d_points() -> None:
    text = collection(
        feature(
            {"id": "S-1", "kind": "gas", "heartbeat_s": 60.0}, {"type": "Point", "coordinates": [120, 30, 15]}
        ),
        feature({"id": "S-2", "kind": "gas", "heartbeat_s": "120"}),
    )
    s1, s2 = parse("sensors", text, file="s", fmt="geojson")
    assert isinstance(s1, SensorRow) and isinstance(s2, SensorRow)
    assert (s1.heartbeat_s, s1.location, s2.heartbeat_s) == (60, Point(120, 30), 120)
    assert s1.location is not None
    assert not s1.location.has_z


def test_stock_features_carry_no_geometry() -> None:
    text = collection(
        feature({"depot_id": "DEP-1", "item": "water", "quantity": 1.5, "unit": "l"}, point(120, 30))
    )
    assert errors_of("stock", text, "geojson") == [
        "stock.geojson: feature 0, field 'geometry': "
        "must be null: stock has no location of its own (it is at its depot)"
    ]


def test_geojson_districts_accept_polygons_and_multipolygons() -> None:
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]}
    text = collection(feature({"id": "D-1", "name": "A"}, SQUARE), feature({"id": "D-2", "name": "B"}, multi))
    d1, d2 = parse("districts", text, file="d", fmt="geojson")
    assert isinstance(d1, DistrictRow) and isinstance(d2, DistrictRow)
    assert d1.geom == d2.geom == MultiPolygon([shape(SQUARE)])
    assert errors_of("districts", collection(feature({"id": "D-3", "name": "C"})), "geojson") == [
        "districts.geojson: feature 0, field 'geometry': is required"
    ]


# --- odds and ends ------------------------------------------------------------------------


def test_row_error_text() -> None:
    assert str(RowError("f.csv", 7, "crew", "bad")) == "f.csv: row 7, field 'crew': bad"
    assert str(RowError("f.csv", 7, None, "bad")) == "f.csv: row 7: bad"
    assert str(RowError("f.geojson", 0, "id", "bad", "feature")) == "f.geojson: feature 0, field 'id': bad"
    assert str(RowError("f.csv", None, None, "bad")) == "f.csv: bad"


def test_format_of() -> None:
    assert [format_of(n) for n in ("a.CSV", "a.geojson", "a.json", "a.txt", "a.osm")] == [
        "csv",
        "geojson",
        "geojson",
        None,
        None,
    ]


def test_unknown_kind_or_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        parse("roads", "", file="r", fmt="csv")
    with pytest.raises(ValueError, match="unknown format"):
        parse("units", "", file="u", fmt="xlsx")  # type: ignore[arg-type]  # deliberately not a Format


# --- round trips: the whole demo city, both formats ------------------------------------------


def city_rows(city: City) -> dict[str, tuple[Row, ...]]:
    o = Origin("demo", 0)
    return {
        "districts": tuple(DistrictRow(o, d.id, d.name, d.name_zh, d.geom) for d in city.districts),
        "units": tuple(
            UnitRow(
                o,
                u.id,
                u.callsign,
                u.type,
                u.capabilities,
                u.crew,
                u.station,
                u.district_id,
                "available",
                u.home,
            )
            for u in city.units
        ),
        "depots": tuple(DepotRow(o, d.id, d.name, d.district_id, d.location) for d in city.depots),
        "stock": (
            *(StockRow(o, s.depot_id, s.item, Decimal(s.quantity), s.unit, s.expires_on) for s in city.stock),
            # Decimals a float can and cannot carry exactly.
            StockRow(o, "DEP-X", "fuel", Decimal("0.1"), "l", None),
            StockRow(o, "DEP-X", "salt", Decimal("1.0000000000000000001"), "kg", None),
        ),
        # attrs as JSON has them: lists, not the demo city's tuples.
        "hazards": tuple(
            HazardRow(o, h.id, h.kind, h.name, json.loads(json.dumps(dict(h.attrs))), h.geom)
            for h in city.hazards
        ),
        "sites": tuple(SiteRow(o, s.id, s.kind, s.name, s.capacity, s.beds, {}, s.geom) for s in city.sites),
        "sensors": tuple(
            SensorRow(o, s.id, s.kind, s.name, s.district_id, 600, s.location) for s in city.sensors
        ),
    }


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
@pytest.mark.parametrize("kind", KINDS)
def test_dump_then_parse_gives_the_same_rows(kind: str, fmt: Format) -> None:
    rows = city_rows(build_city())[kind]
    assert rows
    text = dump(kind, rows, fmt)
    again = parse(kind, text, file=f"{kind}.{fmt}", fmt=fmt)
    assert again == rows
    assert dump(kind, again, fmt) == text


def test_empty_exports_read_back_empty() -> None:
    for kind in KINDS:
        for fmt in ("csv", "geojson"):
            assert parse(kind, dump(kind, (), fmt), file="f", fmt=fmt) == ()
