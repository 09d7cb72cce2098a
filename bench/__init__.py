"""Benchmarks, run with ``python -m bench`` (``make bench``); never part of ``make test``.

Every figure is printed beside a raw baseline measured in the same run on the
same machine, and the ratio between them, so a number means something on any
machine. The Markdown table goes to stdout; the JSON with every detail and the
table are written to ``bench/results/`` (``ingest-<date>[-profile].json``,
``ingest-latest.md``, ``geo-<date>[-profile].json``, ``geo-latest.md``),
meant to be committed.

``python -m bench`` runs the ingest benchmark, then the geolocation one;
``--quick``, ``--keep`` and ``--no-save`` apply to both, the other options
to the ingest only. ``--only ingest`` or ``--only geo`` runs one of them.

    python -m bench                       default: floods of 20,000, 15 s per rate (about 3 min),
                                          then geo (under 1 min)
    python -m bench --quick               floods of 5,000, 5 s per rate (about 1 min), geo quick (about 20 s)
    python -m bench --full                floods of 300,000, 60 s per rate (long); geo default
    python -m bench --broker-save second  one broker persistence mode only (change|second|both)
    python -m bench --profile-dir DIR     py-spy the server during each flood;
                                          then: python -m bench.hotspots DIR/server-second.txt
    python -m bench --keep                keep the run folders (service data and every log)
    python -m bench.geo [--quick]         the geolocation benchmark alone (= --only geo)

Modules:
    ingest      the ingest benchmark: scenarios, report, entry point
    geo         the geolocation benchmark: nearest unit, road ETA, recommendation
    rig         private PostgreSQL (and Mosquitto) instances for one run
    procs       child processes (publisher, subscriber, server), always stopped
    publisher   ``python -m bench.publisher``: a sensor fleet flooding or paced
    subscriber  ``python -m bench.subscriber``: a bare MQTT subscriber that counts
    fleet       the sensor fleet and its alarm payloads (pure)
    cpu         CPU seconds per process, from /proc
    stats       percentiles and number formatting (pure)
    machine     what the run ran on
    hotspots    ``python -m bench.hotspots``: summarise a py-spy profile
"""
