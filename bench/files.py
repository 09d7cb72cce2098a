"""Result files, for ``bench/results/`` and ``chaos/results/`` alike: JSON without NaN, written atomically."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """NaN and infinities (a figure that could not be measured) become null: JSON has neither."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, body: Any) -> None:
    write_atomic(path, json.dumps(jsonable(body), indent=2, default=str) + "\n")
