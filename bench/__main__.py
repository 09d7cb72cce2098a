"""``python -m bench``: every benchmark in turn (``make bench``), or one with ``--only``.

    python -m bench [--only ingest|geo|latency|storm|fanout|dispatch|scaling] [options]

Order: ingest, geo, latency, storm, fanout, dispatch, scaling (about 20
minutes on a 2-core machine; ``--quick`` runs a short smoke version of
each, a few minutes in all). ``--quick``, ``--keep`` and ``--no-save``
apply to all of them; every other option is the ingest's when they all run,
and the selected benchmark's with ``--only`` (``python -m bench --only
latency --help`` lists them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench import dispatches, fanout, geo, ingest, latency, scaling, storm

# The options every benchmark takes.
SHARED_OPTIONS = frozenset({"--quick", "--keep", "--no-save"})
INTERRUPTED = 130


def _geo(argv: list[str], prog: str) -> int:
    return geo.main(argv, prog=prog)


def _ingest(argv: list[str], prog: str) -> int:
    return ingest.main(argv)


BENCHMARKS: dict[str, Callable[[list[str], str], int]] = {
    "ingest": _ingest,
    "geo": _geo,
    "latency": lambda argv, prog: latency.main(argv, prog=prog),
    "storm": lambda argv, prog: storm.main(argv, prog=prog),
    "fanout": lambda argv, prog: fanout.main(argv, prog=prog),
    "dispatch": lambda argv, prog: dispatches.main(argv, prog=prog),
    "scaling": lambda argv, prog: scaling.main(argv, prog=prog),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench", add_help=False)
    p.add_argument("--only", choices=tuple(BENCHMARKS))
    p.add_argument("-h", "--help", action="store_true")
    known, rest = p.parse_known_args(args)
    if known.help and known.only is None:
        print((__doc__ or "").strip())
        return 0
    if known.help:
        rest.append("--help")
    if known.only is not None:
        return BENCHMARKS[known.only](rest, f"python -m bench --only {known.only}")
    status = 0
    shared = [a for a in rest if a in SHARED_OPTIONS]
    for name, run in BENCHMARKS.items():
        # The ingest keeps every option (it had them all before the others existed).
        code = run(rest if name == "ingest" else shared, "python -m bench")
        if code == INTERRUPTED:
            return code
        status = max(status, code)
    return status


if __name__ == "__main__":
    sys.exit(main())
