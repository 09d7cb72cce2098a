"""Benchmarks, run with ``python -m bench`` (``make bench``); never part of ``make test``.

Every figure is printed beside a raw baseline measured in the same run on the
same machine, and the ratio between them, so a number means something on any
machine. The Markdown table goes to stdout; the JSON with every detail
(machine, versions, settings included), the table and (for all but ingest
and geo) a PNG chart are written to ``bench/results/``
(``<kind>-<date>[-profile].json``, ``<kind>-latest.md``,
``<kind>-latest.png``), meant to be committed.

``python -m bench`` runs them all in turn (about 20 minutes on 2 cores):
ingest, geo, latency, storm, fanout, dispatch, scaling. ``--quick``,
``--keep`` and ``--no-save`` apply to all; ``--only KIND`` runs one, with
its own options (``python -m bench --only latency --help``).

    python -m bench                       everything, default profiles
    python -m bench --quick               a short smoke run of each (a few minutes)
    python -m bench --only ingest --full  floods of 300,000, 60 s per rate (long)
    python -m bench --broker-save second  the ingest with one broker persistence mode only
    python -m bench --profile-dir DIR     py-spy the server during each ingest flood;
                                          then: python -m bench.hotspots DIR/server-second.txt
    python -m bench --keep                keep the run folders (service data and every log)
    python -m bench --only latency --cell 1000:1000:second   one cell of the latency grid
    python -m bench --only fanout --compress  consoles offer permessage-deflate, as browsers
                                          do (results as fanout-compress-*)

Modules:
    ingest      the ingest benchmark: scenarios, report, entry point
    geo         the geolocation benchmark: nearest unit, road ETA, recommendation
    rig         private PostgreSQL (and Mosquitto) instances for one run (chaos/ builds on it)
    procs       child processes (publisher, subscriber, server), always stopped
    publisher   ``python -m bench.publisher``: a sensor fleet flooding or paced
    subscriber  ``python -m bench.subscriber``: a bare MQTT subscriber that counts
    fleet       the sensor fleet and its alarm payloads (pure)
    cpu         CPU seconds per process, from /proc
    stats       percentiles and number formatting (pure)
    files       result files: JSON without NaN, written atomically (chaos/ writes with it too)
    machine     what the run ran on
    hotspots    ``python -m bench.hotspots``: summarise a py-spy profile
    latency     alarm publish → console receipt at 100/1,000/5,000 alarms/s, 1/100/1,000 consoles
    storm       100,000 alarms within a minute in five areas: all stored, five incidents, drain time
    fanout      the most consoles one instance holds (RSS, p99 at one update a second each)
    dispatches  POST /api/incidents/{id}/dispatches latency, commanders racing for units
    scaling     ingest and latency with 1, 2 and 3 instances in one MQTT share group
    runner      what those five share: options, report header, JSON/Markdown/PNG files
    live        console accounts, the console fleet processes, RSS sampling, every-alarm latency
    consoles    ``python -m bench.consoles``: a process holding N WebSocket consoles, timing receipts
    broadcast   ``python -m bench.broadcast``: the bare aiohttp broadcast server (fan-out baseline)
    charts      matplotlib helpers for the PNG charts
"""
