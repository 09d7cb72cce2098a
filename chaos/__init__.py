"""Fault injection, run with ``python -m chaos`` (``make chaos``); never part of ``make test``.

With a QoS 1 flood running (publisher processes; an alarm counts as sent only
once the broker's PUBACK came back), against private PostgreSQL and Mosquitto
started with the configuration ``emergency up`` uses and real ``emergency
serve`` processes, each case injects one kind of fault and checks the
database against the ground truth:

1. ``server-kill``: SIGKILL the server at random moments, restart it under
   the same ``EMERGENCY_INSTANCE``: nothing lost, no duplicate alarm or
   incident; recovery time.
2. ``db-restart``: ``pg_ctl stop -m immediate`` and start: nothing lost, no
   PUBACK while the database is down (seen on the wire), backlog drained.
3. ``broker``: Mosquitto restarted cleanly with the shipped configuration
   (the broker ``emergency up`` configures, the server's default plain
   subscriptions): nothing lost. Reported apart (†): the same with an opt-in
   share group (a known Mosquitto 2.0.11 limitation, docs/scaling.md),
   Mosquitto's default configuration as a control (it loses), and SIGKILL
   against the documented bound (docs/operations.md).
4. ``consoles``: WebSocket consoles dropping at random and resuming by seq
   on either of two instances: no event missed or repeated.
5. ``fuzz``: fuzzed payloads (hypothesis and random mutations) and malformed
   MQTT at the broker: no crash, each dead-lettered with the parser's
   reason, no incident, everything still serving.

The small versions of each case run in the test suite
(tests/integration/test_faults.py, test_instances.py, test_feed.py,
test_inputs.py and test_chaos_small.py).

Modules:
    __main__        the command line: cases in turn, the table, the result files
    profile         the quick and full profiles
    rig             private services (on bench/rig.py's), `emergency serve` processes
    procs           child processes and the sweep that stops whatever is left
    fleet           the flood's sensors and alarms (pure; the sensor record is bench's)
    publisher       ``python -m chaos.publisher``: the QoS 1 flood, acknowledged ids recorded
    flood           publisher processes from the orchestrator, and the exactly-once check
    tap             an MQTT-aware TCP proxy that sees the server's PUBACKs
    consoles        ``python -m chaos.consoles``: consoles that drop and resume
    fuzz            the fuzz corpus and its oracle (the pure parsers)
    garbage         malformed MQTT on raw TCP connections
    case_*          the five cases
    report          rows, the table, JSON and Markdown under chaos/results/
"""
