"""The CAP contract: real documents parse, hostile ones are rejected with a reason."""

from __future__ import annotations

import random
import sys
import xml.etree.ElementTree as StdET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon

from sensors.alarms import KINDS, SEVERITIES, Rejected
from sensors.cap import (
    CIRCLE_VERTICES,
    MAX_CAP_PAYLOAD,
    MAX_POINTS,
    MAX_REPAIR_RING,
    MAX_SHAPES,
    CapAlert,
    CapReference,
    circle_polygon,
    correlation_key_for,
    parse_cap,
    parse_polygon,
    referenced_keys,
    to_incident_fields,
)
from tests.cap_samples import SAMPLE_NAMES, SAMPLES, sample
from tests.unit.test_pure_imports import FORBIDDEN, imported_roots

ROOT = Path(__file__).resolve().parents[2]

CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
CATEGORIES = {"natural_disaster", "accident", "public_health", "public_security"}


def cap_document(info: str = "", *, sent: str = "2026-11-28T16:00:00+08:00", extra: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<alert xmlns="{CAP12}">'
        "<identifier>T-1</identifier><sender>test@example.org</sender>"
        f"<sent>{sent}</sent><status>Actual</status><msgType>Alert</msgType>"
        f"<scope>Public</scope>{extra}{info}</alert>"
    ).encode()


def info_block(
    *,
    language: str = "en-US",
    category: str = "Met",
    event: str = "Flood Warning",
    severity: str = "Severe",
    area: str = "",
    headline: str = "",
) -> str:
    return (
        f"<info><language>{language}</language><category>{category}</category><event>{event}</event>"
        f"<urgency>Expected</urgency><severity>{severity}</severity><certainty>Likely</certainty>"
        f"{f'<headline>{headline}</headline>' if headline else ''}{area}</info>"
    )


def polygon_area(text: str) -> str:
    return f"<area><areaDesc>somewhere</areaDesc><polygon>{text}</polygon></area>"


def document_polygon_points(payload: bytes) -> list[tuple[float, float]]:
    """The first polygon's (lat, lon) pairs, read straight from a trusted sample
    with the standard library, independently of the module under test."""
    root = StdET.fromstring(payload)
    text = root.findtext(f".//{{{CAP12}}}polygon")
    assert text
    return [(float(lat), float(lon)) for lat, lon in (pair.split(",") for pair in text.split())]


# ---------------------------------------------------------------- every real document


def test_the_samples_in_the_repository_are_the_listed_ones() -> None:
    # Listed, not globbed, so a lost file fails; an added one must be listed too.
    assert sorted(p.name for p in SAMPLES.glob("*.xml")) == sorted(SAMPLE_NAMES)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_parses(name: str) -> None:
    alert = parse_cap(sample(name))
    assert alert.sent.utcoffset() is not None
    assert correlation_key_for(alert) == f"cap:{alert.sender}:{alert.identifier}"
    if alert.infos:
        incident = to_incident_fields(alert)
        assert incident.kind in KINDS
        assert incident.category in CATEGORIES
        assert incident.severity in SEVERITIES
        assert incident.title
        if incident.area is not None:
            assert incident.area.is_valid
            assert incident.lat is not None and incident.lon is not None
            assert incident.area.covers(Point(incident.lon, incident.lat))
    else:
        with pytest.raises(Rejected, match="no info block"):
            to_incident_fields(alert)


def test_versions_are_told_apart() -> None:
    for version, tag in (("1.2", "v1dot2"), ("1.1", "v1dot1"), ("1.0", "v1dot0")):
        assert parse_cap(sample(f"{tag}_appendix_adot1.xml")).version == version


# ---------------------------------------------------------------- CAP 1.2 appendix A


def test_a1_homeland_security_advisory() -> None:
    alert = parse_cap(sample("v1dot2_appendix_adot1.xml"))
    assert (alert.identifier, alert.sender) == ("43b080713727", "hsas@dhs.gov")
    assert alert.sent == datetime(2003, 4, 2, 19, 39, 1, tzinfo=UTC)
    assert (alert.status, alert.msg_type, alert.scope, alert.references) == ("Actual", "Alert", "Public", ())
    (info,) = alert.infos
    assert info.language == "en-US"  # absent, so the spec's default
    assert info.categories == ("Security",)
    assert (info.urgency, info.severity, info.certainty) == ("Immediate", "Severe", "Likely")
    assert info.parameters == (("HSAS", "ORANGE"),)
    assert info.description is not None and "ORANGE / High" in info.description
    (area,) = info.areas
    assert area.description == "U.S. nationwide and interests worldwide"
    assert area.geometry is None

    incident = to_incident_fields(alert)
    assert (incident.kind, incident.category, incident.severity) == ("other", "public_security", "Severe")
    assert incident.title == "Homeland Security Sets Code ORANGE"
    assert (incident.area, incident.lat, incident.lon) == (None, None, None)
    assert correlation_key_for(alert) == "cap:hsas@dhs.gov:43b080713727"


def test_a2_severe_thunderstorm_polygon_is_lon_lat_in_california() -> None:
    payload = sample("v1dot2_appendix_adot2.xml")
    alert = parse_cap(payload)
    (info,) = alert.infos
    assert (info.categories, info.event, info.severity, info.certainty) == (
        ("Met",),
        "SEVERE THUNDERSTORM",
        "Severe",
        "Observed",
    )
    assert info.expires == datetime(2003, 6, 17, 23, 0, tzinfo=UTC)
    (area,) = info.areas
    assert area.description.startswith("EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA, EXTREME")
    assert area.geocodes == (("SAME", "006109"), ("SAME", "006009"), ("SAME", "006003"))
    (polygon,) = area.polygons
    assert polygon.exterior.coords[0] == (-120.14, 38.47)  # CAP's "38.47,-120.14", swapped
    minx, miny, maxx, maxy = polygon.bounds
    assert (minx, miny, maxx, maxy) == (-120.14, 38.34, -119.74, 38.62)
    assert maxx < 0 and 25 < miny < maxy < 50  # in the USA, not in the Southern Ocean

    # The mean of the document's distinct corners lies inside a convex ring;
    # read in (lon, lat) it is inside, read the wrong way round it is not.
    corners = document_polygon_points(payload)[:-1]
    lat = sum(p[0] for p in corners) / len(corners)
    lon = sum(p[1] for p in corners) / len(corners)
    assert polygon.contains(Point(lon, lat))
    assert not polygon.contains(Point(lat, lon))

    incident = to_incident_fields(alert)
    assert (incident.kind, incident.category, incident.severity) == ("other", "natural_disaster", "Severe")
    assert incident.title == "SEVERE THUNDERSTORM WARNING"
    assert incident.area is not None and incident.area.equals(polygon)
    assert incident.lat is not None and incident.lon is not None
    assert 38.34 < incident.lat < 38.62 and -120.14 < incident.lon < -119.74
    assert polygon.contains(Point(incident.lon, incident.lat))


def test_a3_earthquake_update_finds_the_original_alert() -> None:
    alert = parse_cap(sample("v1dot2_appendix_adot3.xml"))
    assert (alert.identifier, alert.msg_type) == ("TRI13970876.2", "Update")
    assert alert.references == (
        CapReference("trinet@caltech.edu", "TRI13970876.1", datetime(2003, 6, 12, 3, 30, tzinfo=UTC)),
    )
    assert referenced_keys(alert) == ("cap:trinet@caltech.edu:TRI13970876.1",)
    # The CAP 1.0 appendix carries that original Alert: the Update finds its incident.
    original = parse_cap(sample("v1dot0_appendix_adot3.xml"))
    assert original.msg_type == "Alert"
    assert correlation_key_for(original) in referenced_keys(alert)

    (info,) = alert.infos
    assert (info.categories, info.event) == (("Geo",), "Earthquake")
    assert (info.urgency, info.severity, info.certainty) == ("Past", "Minor", "Observed")
    assert ("Magnitude", "3.4 Ml") in info.parameters
    (area,) = info.areas
    (circle,) = area.circles  # "32.9525,-115.5527 0": radius 0, the epicentre itself
    assert len(circle.exterior.coords) - 1 >= 32
    assert circle.contains(Point(-115.5527, 32.9525))

    incident = to_incident_fields(alert)
    assert (incident.kind, incident.category, incident.severity) == (
        "earthquake",
        "natural_disaster",
        "Minor",
    )
    assert incident.title == "EQ 3.4 Imperial County CA"
    assert incident.lat == pytest.approx(32.9525, abs=1e-6)
    assert incident.lon == pytest.approx(-115.5527, abs=1e-6)


def test_a4_amber_alert_prefers_english_of_two_languages() -> None:
    alert = parse_cap(sample("v1dot2_appendix_adot4.xml"))
    assert [info.language for info in alert.infos] == ["en-US", "es-US"]
    assert [info.event for info in alert.infos] == ["Child Abduction", "Abducción de Niño"]
    assert all(info.areas[0].geocodes == (("SAME", "006037"),) for info in alert.infos)

    incident = to_incident_fields(alert)
    assert incident.language == "en-US"
    assert incident.title == "Amber Alert in Los Angeles County"
    assert (incident.kind, incident.category, incident.severity) == ("other", "accident", "Severe")
    assert (incident.urgency, incident.certainty) == ("Immediate", "Likely")
    # Located by county code only: the store has to resolve the geocode.
    assert (incident.area, incident.lat, incident.lon) == (None, None, None)


# ---------------------------------------------------------------- older versions, real feeds


def test_cap10_name_value_pairs_and_very_likely() -> None:
    thunderstorm = parse_cap(sample("v1dot0_appendix_adot2.xml"))
    assert thunderstorm.infos[0].areas[0].geocodes[0] == ("fips6", "006109")
    assert thunderstorm.infos[0].areas[0].polygons[0].exterior.coords[0] == (-120.14, 38.47)
    quake = parse_cap(sample("v1dot0_appendix_adot3.xml"))
    assert quake.infos[0].certainty == "Likely"  # 1.0's "Very Likely"
    assert ("EventID", "13970876") in quake.infos[0].parameters


def test_ipaws_cancel_without_info_still_points_at_its_alert() -> None:
    alert = parse_cap(sample("ipaws-5e6dd9de023f1930ef6548d9.xml"))
    assert (alert.msg_type, alert.infos) == ("Cancel", ())
    assert referenced_keys(alert) == (
        "cap:bbrundage@dps.state.nv.us:AS-NV-e18921c7-1b35-4a81-9705-42d25c265ddd",
    )


def test_tsunami_update_references_three_earlier_messages() -> None:
    alert = parse_cap(sample("google-PAAQ-4-mg5a94.xml"))
    assert [ref.identifier for ref in alert.references] == ["PAAQ-1-mg5a94", "PAAQ-2-mg5a94", "PAAQ-3-mg5a94"]
    incident = to_incident_fields(alert)
    assert (incident.kind, incident.severity) == ("earthquake", "Unknown")
    assert (incident.lat, incident.lon) == pytest.approx((55.3, -134.9))


def test_nws_empty_polygon_element_is_no_geometry() -> None:
    alert = parse_cap(sample("nws-5c2cf27b1f56885d61654dc47fa411d5.xml"))
    assert alert.version == "1.1"
    assert alert.infos[0].areas[0].polygons == ()


# ---------------------------------------------------------------- several info blocks


def test_english_block_is_chosen_and_the_worst_severity_wins() -> None:
    alert = parse_cap(
        cap_document(
            info_block(language="es-ES", event="Inundación", severity="Extreme")
            + info_block(
                language="en",
                event="Flood Warning",
                severity="Minor",
                headline="River flooding",
                area=polygon_area("30.0,120.0 30.0,120.1 30.1,120.1 30.1,120.0 30.0,120.0"),
            )
            + info_block(language="fr-FR", event="Inondation", severity="Moderate")
        )
    )
    incident = to_incident_fields(alert)
    assert (incident.language, incident.event, incident.title) == ("en", "Flood Warning", "River flooding")
    assert (incident.kind, incident.category, incident.severity) == ("flood", "natural_disaster", "Extreme")
    assert incident.lat == pytest.approx(30.05) and incident.lon == pytest.approx(120.05)


def test_without_english_the_first_block_is_chosen() -> None:
    alert = parse_cap(
        cap_document(
            info_block(language="zh-CN", category="Fire", event="森林火灾")
            + info_block(language="de-DE", event="Hochwasser")
        )
    )
    incident = to_incident_fields(alert)
    assert (incident.language, incident.title) == ("zh-CN", "森林火灾")
    # No keyword in Chinese text: the CAP category still names the kind.
    assert (incident.kind, incident.category) == ("fire", "accident")


def test_area_is_the_union_of_every_area_of_the_chosen_info() -> None:
    areas = polygon_area("30,120 30,120.1 30.1,120.1 30.1,120 30,120") + (
        "<area><areaDesc>b</areaDesc><circle>31,121 5</circle></area>"
    )
    incident = to_incident_fields(parse_cap(cap_document(info_block(area=areas))))
    assert incident.area is not None and incident.area.geom_type == "MultiPolygon"
    assert incident.area.covers(Point(120.05, 30.05)) and incident.area.covers(Point(121, 31))
    # The centroid of two far-apart pieces is in neither; the pin stays inside.
    assert incident.lat is not None and incident.lon is not None
    assert incident.area.covers(Point(incident.lon, incident.lat))


@pytest.mark.parametrize(
    ("category", "event", "kind", "incident_category"),
    [
        ("Geo", "Tsunami Warning", "earthquake", "natural_disaster"),
        ("Met", "Flash Flood Warning", "flood", "natural_disaster"),
        ("Met", "Storm Surge Warning", "flood", "natural_disaster"),
        ("Met", "Tornado Warning", "other", "natural_disaster"),
        ("Met", "Hurricane Warning", "other", "natural_disaster"),
        ("Met", "High Wind Warning", "other", "natural_disaster"),
        ("Fire", "Wildfire", "fire", "accident"),
        ("Fire", "Wind Advisory", "other", "accident"),
        ("CBRNE", "Chemical Release", "hazmat", "accident"),
        ("Safety", "Hazardous Materials Warning", "hazmat", "accident"),
        ("Safety", "Evacuation Immediate", "crowd", "accident"),
        ("Safety", "Civil Danger Warning", "crowd", "accident"),
        ("Geo", "Landslide Warning", "landslide", "natural_disaster"),
        ("Env", "Air Quality Alert", "air_quality", "natural_disaster"),
        ("Health", "Boil Water Advisory", "medical", "public_health"),
        ("Security", "Law Enforcement Warning", "other", "public_security"),
        ("Infra", "Power Outage", "power_outage", "accident"),
        ("Transport", "Road Closure", "traffic_accident", "accident"),
        ("Other", "Administrative Message", "other", "public_security"),
        ("Other", "Earthquake", "earthquake", "natural_disaster"),
    ],
)
def test_kind_and_category_mapping(category: str, event: str, kind: str, incident_category: str) -> None:
    incident = to_incident_fields(parse_cap(cap_document(info_block(category=category, event=event))))
    assert (incident.kind, incident.category) == (kind, incident_category)
    assert incident.title == event


# ---------------------------------------------------------------- geometry


def test_circle_corrects_longitude_for_latitude() -> None:
    circle = circle_polygon(60.0, 10.0, 10.0)
    assert len(circle.exterior.coords) - 1 == CIRCLE_VERTICES >= 32
    minx, miny, maxx, maxy = circle.bounds
    assert maxy - miny == pytest.approx(2 * 10 / 111.32, rel=1e-3)
    assert maxx - minx == pytest.approx(2 * 10 / (111.32 * 0.5), rel=1e-3)  # cos 60° = 0.5
    assert circle.centroid.x == pytest.approx(10.0) and circle.centroid.y == pytest.approx(60.0)


def test_unclosed_polygon_is_closed_and_bow_tie_is_repaired() -> None:
    (closed,) = parse_polygon("30,120 30,121 31,121 31,120")
    assert closed.exterior.coords[0] == closed.exterior.coords[-1] == (120.0, 30.0)
    assert closed.area == pytest.approx(1.0)
    bow_tie = parse_polygon("30,120 31,121 31,120 30,121 30,120")
    assert len(bow_tie) == 2 and all(isinstance(p, Polygon) and p.is_valid for p in bow_tie)
    (spaced,) = parse_polygon("30, 120 30, 121 31, 121 30, 120")
    assert spaced.exterior.coords[0] == (120.0, 30.0)


# ---------------------------------------------------------------- rejections


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&e;</identifier></alert>"""


def replace(payload: bytes, old: str, new: str) -> bytes:
    assert old.encode() in payload
    return payload.replace(old.encode(), new.encode())


def random_ring(points: int) -> str:
    # Random corners cross each other everywhere: the costliest ring to repair.
    rng = random.Random(points)
    return " ".join(f"{30 + rng.random():.4f},{120 + rng.random():.4f}" for _ in range(points))


def circles(count: int) -> str:
    return "<area><areaDesc>a</areaDesc>" + "<circle>30,120 5</circle>" * count + "</area>"


REJECTIONS: list[tuple[str, bytes, str]] = [
    ("billion laughs", BILLION_LAUGHS, "(DTD) are not allowed"),
    ("external entity", EXTERNAL_ENTITY, "(DTD) are not allowed"),
    (
        "harmless doctype",
        b'<!DOCTYPE alert><alert xmlns="' + CAP12.encode() + b'"/>',
        "(DTD) are not allowed",
    ),
    ("broken XML", cap_document()[:-10], "malformed XML"),
    ("not XML", b"\x00\x01garbage", "malformed XML"),
    ("unknown encoding", replace(cap_document(), '"UTF-8"', '"ATF-8"'), "XML encoding not supported"),
    ("multi-byte encoding", replace(cap_document(), '"UTF-8"', '"shift_jis"'), "XML encoding not supported"),
    ("codec that is no text encoding", replace(cap_document(), '"UTF-8"', '"rot13"'), "XML encoding not"),
    ("empty", b"", "malformed XML"),
    ("wrong root", f'<feed xmlns="{CAP12}"><alert/></feed>'.encode(), "root element is <feed>"),
    ("wrong namespace", b'<alert xmlns="urn:example:cap"/>', "is not CAP 1.2, 1.1 or 1.0"),
    ("no namespace", b"<alert><identifier>x</identifier></alert>", "'no namespace'"),
    ("oversized", b"<" + b" " * MAX_CAP_PAYLOAD, "exceeds"),
    ("sent without timezone", cap_document(sent="2026-11-28T16:00:00"), "alert sent has no UTC offset"),
    ("sent not a time", cap_document(sent="yesterday"), "not a CAP date-time"),
    ("missing identifier", replace(cap_document(), "<identifier>T-1</identifier>", ""), "<identifier>"),
    ("comma in identifier", replace(cap_document(), ">T-1<", ">T,1<"), "whitespace or a comma"),
    ("unknown msgType", replace(cap_document(), ">Alert<", ">Panic<"), "unknown CAP msgType 'Panic'"),
    ("unknown severity", cap_document(info_block(severity="Dire")), "unknown CAP severity 'Dire'"),
    ("unknown category", cap_document(info_block(category="Volcano")), "unknown CAP category 'Volcano'"),
    (
        "reference without timezone",
        cap_document(extra="<references>a@b,X-1,2026-11-28T08:00:00</references>"),
        "has no UTC offset",
    ),
    (
        "latitude out of range",
        cap_document(
            info_block(area=polygon_area("138.47,-120.14 38.34,-119.95 38.52,-119.74 138.47,-120.14"))
        ),
        "latitude 138.47 out of range",
    ),
    (
        "lon,lat order instead of lat,lon",
        cap_document(
            info_block(area=polygon_area("-120.14,38.47 -119.95,38.34 -119.74,38.52 -120.14,38.47"))
        ),
        "latitude -120.14 out of range [-90, 90] (CAP points are 'lat,lon')",
    ),
    (
        "longitude out of range",
        cap_document(info_block(area=polygon_area("38,-190 38,-119 39,-119 38,-190"))),
        "longitude -190.0 out of range",
    ),
    (
        "two-point polygon",
        cap_document(info_block(area=polygon_area("38,-120 39,-120 38,-120"))),
        "at least 3 distinct points",
    ),
    (
        "point not a pair",
        cap_document(info_block(area=polygon_area("38 -120 39 -121 38 -121"))),
        "not 'lat,lon'",
    ),
    (
        "negative radius",
        cap_document(info_block(area="<area><areaDesc>a</areaDesc><circle>38,-120 -5</circle></area>")),
        "radius -5.0 km out of range",
    ),
    (
        "too large to repair",
        cap_document(info_block(area=polygon_area(random_ring(MAX_REPAIR_RING + 1)))),
        f"self-intersecting ring of {MAX_REPAIR_RING + 2} points is too large to repair",
    ),
    (
        "too many invalid rings",
        cap_document(info_block(area=polygon_area(random_ring(250)) * 5)),
        "area 4 polygon 1: more than 1000 points of invalid rings",  # 4 x 251 > 1000
    ),
    ("too many shapes", cap_document(info_block(area=circles(MAX_SHAPES + 1))), "more than 1000 polygons"),
    (
        "too many points",
        cap_document(info_block(area=polygon_area("1,1 " * MAX_POINTS + "2,2"))),
        f"more than {MAX_POINTS} polygon points",
    ),
    (
        "area without description",
        cap_document(info_block(area="<area><circle>38,-120 5</circle></area>")),
        "missing required element <areaDesc>",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejections_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_cap(payload)
    assert reason in info.value.reason


def test_alert_without_info_has_nothing_to_open() -> None:
    with pytest.raises(Rejected, match="has no info block"):
        to_incident_fields(parse_cap(cap_document()))


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2052), junk=st.binary(max_size=8), at=st.integers(0, 2052))
def test_mangled_documents_raise_only_rejected(cut: int, junk: bytes, at: int) -> None:
    original = sample("v1dot2_appendix_adot2.xml")
    for payload in (original[:cut], original[:at] + junk + original[at + len(junk) :]):
        try:
            alert = parse_cap(payload)
        except Rejected as exc:
            assert exc.reason
            continue
        assert isinstance(alert, CapAlert)
        if alert.infos:
            to_incident_fields(alert)


# ---------------------------------------------------------------- no I/O, no schema


_AUDITED: list[str] = []
_WATCHING: list[bool] = []
_IO_EVENTS = ("open", "socket.", "urllib.", "http.", "subprocess.", "os.system", "ftplib.")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHING and event.startswith(_IO_EVENTS):
        _AUDITED.append(f"{event} {args[:1]!r}")


@pytest.fixture
def io_watch() -> Iterator[list[str]]:
    # Audit hooks cannot be removed; install one for the session, armed only
    # inside this fixture.
    if not getattr(sys, "_cap_test_audit_installed", False):
        sys.addaudithook(_audit)
        vars(sys)["_cap_test_audit_installed"] = True
    _AUDITED.clear()
    _WATCHING.append(True)
    try:
        yield _AUDITED
    finally:
        _WATCHING.clear()


def test_parsing_opens_no_file_and_no_socket(io_watch: list[str]) -> None:
    """cap12.xsd / cap11.xsd are documentation, not a runtime dependency:
    parsing reads only the bytes given, even when a document names its schema
    by URL or smuggles an external entity."""
    payloads = [sample(name) for name in SAMPLE_NAMES]
    schema_located = replace(
        cap_document(info_block()),
        f'<alert xmlns="{CAP12}">',
        f'<alert xmlns="{CAP12}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="{CAP12} http://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.xsd">',
    )
    io_watch.clear()
    for payload in payloads:
        alert = parse_cap(payload)
        if alert.infos:
            to_incident_fields(alert)
    assert parse_cap(schema_located).identifier == "T-1"
    for hostile in (EXTERNAL_ENTITY, BILLION_LAUGHS):
        with pytest.raises(Rejected):
            parse_cap(hostile)
    assert io_watch == []


def test_cap_module_is_pure_and_names_no_schema() -> None:
    path = ROOT / "sensors" / "cap.py"
    assert not imported_roots(path) & FORBIDDEN
    assert "defusedxml" in imported_roots(path)
    assert ".xsd" not in path.read_text()
