"""Road imports without servers: the upload's file name, progress on a terminal and in a pipe."""

from __future__ import annotations

import io

import pytest

from command.admin_api import osm_file_name
from command.errors import ApiError
from command.import_cli import RoadProgress
from command.importer import RoadStage


@pytest.mark.parametrize(
    ("filename", "fmt", "expected"),
    [
        ("city.osm", None, "city.osm"),
        ("City.OSM.PBF", None, "City.osm.pbf"),
        ("hangzhou-latest.osm.pbf", "pbf", "hangzhou-latest.osm.pbf"),
        (None, "osm", "roads.osm"),
        ("", "pbf", "roads.osm.pbf"),
        # Only the last component of a path, and only safe characters, reach the disk.
        ("../../etc/passwd.osm", None, "passwd.osm"),
        ("C:\\maps\\west side.osm", None, "west_side.osm"),
        ("城市.osm", None, "roads.osm"),
        ("..osm", None, "roads.osm"),
    ],
)
def test_the_upload_is_stored_under_a_safe_osm_name(
    filename: str | None, fmt: str | None, expected: str
) -> None:
    assert osm_file_name(filename, fmt) == expected


@pytest.mark.parametrize(
    ("filename", "fmt", "message"),
    [
        (None, None, "say which OpenStreetMap format the file is"),
        ("roads.geojson", None, "'roads.geojson': roads come from OpenStreetMap files (.osm or .osm.pbf)"),
        ("city.pbf", None, "roads come from OpenStreetMap files"),
        ("city.osm", "pbf", "format=pbf but the file is named 'city.osm'"),
        ("city.osm.pbf", "osm", "format=osm but the file is named 'city.osm.pbf'"),
        (None, "xml", "format must be 'osm' or 'pbf', got 'xml'"),
    ],
)
def test_an_upload_that_is_not_named_as_osm_is_a_400(
    filename: str | None, fmt: str | None, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        osm_file_name(filename, fmt)
    assert caught.value.status == 400
    assert message in caught.value.message


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


STAGES = [
    RoadStage("converting", 1, 3, "converting city.osm.pbf to OSM XML (osmium)"),
    RoadStage("osm2pgrouting", 2, 3, "building the routable graph from city.osm.pbf (osm2pgrouting)"),
    RoadStage("loading", 3, 3, "replacing the road network in one transaction"),
]


def test_road_progress_in_a_pipe_is_one_line_per_step() -> None:
    out = io.StringIO()
    progress = RoadProgress(out)
    for stage in STAGES:
        progress(stage)
    progress.tick()  # no bar: nothing to redraw
    progress.close(done=True)
    assert out.getvalue().splitlines() == [
        "roads: step 1 of 3: converting city.osm.pbf to OSM XML (osmium)",
        "roads: step 2 of 3: building the routable graph from city.osm.pbf (osm2pgrouting)",
        "roads: step 3 of 3: replacing the road network in one transaction",
    ]


def test_road_progress_on_a_terminal_is_a_bar_of_steps() -> None:
    out = Terminal()
    progress = RoadProgress(out)
    progress(STAGES[0])
    first = out.getvalue()
    assert "import roads: converting" in first and "0/3" in first
    progress(STAGES[1])
    progress.tick()
    assert "import roads: osm2pgrouting" in out.getvalue() and "1/3" in out.getvalue()
    progress(STAGES[2])
    text = out.getvalue()
    assert "import roads: loading:  67%" in text and "2/3 steps done [00:00]" in text
    assert "roads: step" not in text  # the plain lines are for pipes only
    assert "/s" not in text  # no rate
    progress.close(done=True)
    # Drawn with carriage returns, and cleared at the end (leave=False): the
    # command's own last line says what was imported.
    assert out.getvalue().endswith("\r")
    assert out.getvalue().rstrip("\r").split("\r")[-1].strip() == ""


def test_a_failed_road_import_does_not_fill_the_bar() -> None:
    out = Terminal()
    progress = RoadProgress(out)
    progress(STAGES[0])
    progress(STAGES[1])
    progress.close(done=False)
    assert "3/3" not in out.getvalue()
