"""``python -m bench``: every benchmark (today: the ingest benchmark). ``--help`` lists the options."""

from __future__ import annotations

import sys

from bench.ingest import main

if __name__ == "__main__":
    sys.exit(main())
