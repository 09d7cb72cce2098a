"""CAP feeds over MQTT: every sample is taken, and Alert -> Update -> Cancel drive one incident."""

from __future__ import annotations

import asyncpg
from shapely.geometry import Point, shape

from sensors.cap import parse_cap
from tests.cap_samples import EARTHQUAKE_UPDATE, SAMPLE_NAMES, SAMPLES
from tests.integration.helpers import (
    console,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
    wait_for_value,
)

# The 1.2 appendix earthquake: its epicentre, "32.9525,-115.5527 0" (CAP is lat,lon).
EPICENTRE = Point(-115.5527, 32.9525)
UPDATE_REF = "trinet@caltech.edu,TRI13970876.2,2003-06-11T20:56:00-07:00"


def _earthquake(msg_type: str, identifier: str, references: str | None, sent: str) -> bytes:
    """The 1.2 appendix earthquake Update, rewritten as the message we need."""
    text = EARTHQUAKE_UPDATE.read_text()
    text = text.replace("<identifier>TRI13970876.2</identifier>", f"<identifier>{identifier}</identifier>")
    text = text.replace("<msgType>Update</msgType>", f"<msgType>{msg_type}</msgType>")
    text = text.replace("<sent>2003-06-11T20:56:00-07:00</sent>", f"<sent>{sent}</sent>")
    original_refs = "<references>trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00</references>"
    text = text.replace(original_refs, f"<references>{references}</references>" if references else "")
    return text.encode()


async def test_every_sample_is_taken_and_nothing_dead_lettered(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    samples = [SAMPLES / name for name in SAMPLE_NAMES]
    # The 1.0, 1.1 and 1.2 appendix examples share their CAP identities, and
    # (sender, identifier) is what makes a message unique: the later copies
    # are redeliveries as far as CAP is concerned.
    identities = {(a.sender, a.identifier) for a in (parse_cap(p.read_bytes()) for p in samples)}
    async with running_server(settings), publisher(mqtt_url) as pub:
        for path in samples:
            await pub.publish("cap/samples", path.read_bytes())
        await wait_for_value(conn, "SELECT count(*) FROM cap_messages", len(identities))
        # Redelivery of every document changes nothing.
        for path in samples:
            await pub.publish("cap/samples", path.read_bytes())
        await pub.publish("cap/samples", b"<alert")  # a marker we can wait for
        await wait_for_value(conn, "SELECT count(*) FROM dead_letters", 1)
    assert await conn.fetchval("SELECT count(*) FROM cap_messages") == len(identities)
    assert (await conn.fetchval("SELECT reason FROM dead_letters")).startswith("CAP: ")
    incidents = await conn.fetch(
        """
        SELECT m.identifier, i.kind, i.category, i.severity, i.status,
               ST_Y(i.location) AS lat, ST_X(i.location) AS lon, GeometryType(i.area) AS area
        FROM cap_messages m JOIN incidents i ON i.id = m.incident_id
        WHERE m.sender = 'KSTO@NWS.NOAA.GOV' OR m.identifier LIKE 'TRI13970876%'
           OR m.identifier = '43b080713727'
        ORDER BY m.identifier
        """
    )
    by_id = {r["identifier"]: r for r in incidents}
    thunderstorm = by_id["KSTO1055887203"]
    assert (thunderstorm["kind"], thunderstorm["category"], thunderstorm["severity"]) == (
        "other",
        "natural_disaster",
        "Severe",
    )
    # CAP points are lat,lon: the storm is in California, not in the Southern Ocean.
    assert 38.3 < thunderstorm["lat"] < 38.7 and -120.2 < thunderstorm["lon"] < -119.7
    assert thunderstorm["area"] in ("POLYGON", "MULTIPOLYGON")
    quake = by_id["TRI13970876.2"]
    assert (quake["kind"], quake["category"], quake["severity"]) == (
        "earthquake",
        "natural_disaster",
        "Minor",
    )
    assert round(quake["lat"], 4) == 32.9525 and round(quake["lon"], 4) == -115.5527


async def test_alert_update_cancel_drive_one_incident(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    original = "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00"
    update = "trinet@caltech.edu,TRI13970876.2,2003-06-11T20:56:00-07:00"
    async with (
        running_server(settings),
        console(settings, tokens["commander"]) as ws,
        publisher(mqtt_url) as pub,
    ):
        await ws.receive()
        await pub.publish(
            "cap/trinet", _earthquake("Alert", "TRI13970876.1", None, "2003-06-11T20:30:00-07:00")
        )
        opened = await ws.until("incident.opened")
        await pub.publish("cap/trinet", EARTHQUAKE_UPDATE.read_bytes())
        updated = await ws.until("incident.updated")
        await pub.publish(
            "cap/trinet",
            _earthquake("Cancel", "TRI13970876.3", f"{original} {update}", "2003-06-11T21:30:00-07:00"),
        )
        closed = await ws.until("incident.closed")

    assert opened["data"]["id"] == updated["data"]["id"] == closed["data"]["id"]
    assert opened["data"]["source"] == "cap" and opened["data"]["kind"] == "earthquake"
    assert opened["data"]["last_alert"]["identifier"] == "TRI13970876.1"
    assert updated["data"]["last_alert"] == {
        "sender": "trinet@caltech.edu",
        "identifier": "TRI13970876.2",
        "msg_type": "Update",
        "sent": "2003-06-11T20:56:00-07:00",
    }
    assert closed["data"]["status"] == "cancelled"
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
    links = await conn.fetch("SELECT identifier, incident_id FROM cap_messages ORDER BY identifier")
    assert [(r["identifier"], r["incident_id"]) for r in links] == [
        (f"TRI13970876.{n}", opened["data"]["id"]) for n in (1, 2, 3)
    ]


async def test_update_of_an_alert_never_received_opens_an_incident_and_its_cancel_closes_it(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    """The 1.2 appendix A.3 earthquake, sent alone and as it is: an Update whose
    original (TRI13970876.1) never reached us. A reader still learns of an
    earthquake, so it must open an incident, not fail or be dropped."""
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with (
        running_server(settings),
        console(settings, tokens["commander"]) as ws,
        publisher(mqtt_url) as pub,
    ):
        await ws.receive()  # the snapshot
        await pub.publish("cap/trinet", EARTHQUAKE_UPDATE.read_bytes())
        opened = await ws.until("incident.opened")
        await pub.publish(
            "cap/trinet", _earthquake("Cancel", "TRI13970876.3", UPDATE_REF, "2003-06-11T21:30:00-07:00")
        )
        closed = await ws.until("incident.closed")

    incident = opened["data"]
    assert (incident["source"], incident["kind"], incident["category"]) == (
        "cap",
        "earthquake",
        "natural_disaster",
    )
    # The sample's <severity>Minor</severity>, and its one area: a circle of
    # radius 0 at the epicentre, drawn as a small polygon around that point.
    assert incident["severity"] == "Minor"
    assert (round(incident["lat"], 4), round(incident["lon"], 4)) == (32.9525, -115.5527)
    area = shape(incident["area"])
    assert area.geom_type in ("Polygon", "MultiPolygon") and area.contains(EPICENTRE)
    assert EPICENTRE.hausdorff_distance(area.boundary) < 0.001  # within ~100 m, not a region
    assert incident["last_alert"] == {
        "sender": "trinet@caltech.edu",
        "identifier": "TRI13970876.2",
        "msg_type": "Update",
        "sent": "2003-06-11T20:56:00-07:00",
    }

    assert closed["data"]["id"] == incident["id"] and closed["data"]["status"] == "cancelled"
    assert closed["data"]["last_alert"]["msg_type"] == "Cancel"
    rows = await conn.fetch("SELECT id, status, closed_at FROM incidents")
    assert [(r["id"], r["status"]) for r in rows] == [(incident["id"], "cancelled")]
    assert rows[0]["closed_at"] is not None
    links = await conn.fetch("SELECT identifier, msg_type, incident_id FROM cap_messages ORDER BY identifier")
    assert [(r["identifier"], r["msg_type"], r["incident_id"]) for r in links] == [
        ("TRI13970876.2", "Update", incident["id"]),
        ("TRI13970876.3", "Cancel", incident["id"]),
    ]
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_exercise_is_recorded_but_opens_nothing(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    exercise = EARTHQUAKE_UPDATE.read_text().replace("<status>Actual</status>", "<status>Exercise</status>")
    async with running_server(settings), publisher(mqtt_url) as pub:
        await pub.publish("cap/drill", exercise.encode())
        await wait_for_value(conn, "SELECT count(*) FROM cap_messages", 1)
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    assert await conn.fetchval("SELECT status FROM cap_messages") == "Exercise"
