"""``python -m bench``: the ingest benchmark, then the geolocation benchmark (``make bench``).

    python -m bench [--only ingest|geo] [options]

``--quick``, ``--keep`` and ``--no-save`` apply to both; every other option
is the ingest's (``python -m bench --only ingest --help`` lists them).
``python -m bench --only geo`` is ``python -m bench.geo``.
"""

from __future__ import annotations

import argparse
import sys

from bench import geo, ingest

# The options the geolocation benchmark shares with the ingest one.
GEO_OPTIONS = frozenset({"--quick", "--keep", "--no-save"})
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench", add_help=False)
    p.add_argument("--only", choices=("ingest", "geo"))
    p.add_argument("-h", "--help", action="store_true")
    known, rest = p.parse_known_args(args)
    if known.help and known.only is None:
        print((__doc__ or "").strip())
        return 0
    if known.help:
        rest.append("--help")
    status = 0
    if known.only != "geo":
        status = ingest.main(rest)
        if status == INTERRUPTED:
            return status
    if known.only != "ingest":
        if known.only == "geo":
            status = geo.main(rest, prog="python -m bench --only geo")
        else:
            status = max(status, geo.main([a for a in rest if a in GEO_OPTIONS], prog="python -m bench"))
    return status


if __name__ == "__main__":
    sys.exit(main())
