"""Pure modules import no I/O library (design section 4), checked by parsing them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURE = [
    "sensors/alarms.py",
    "sensors/topics.py",
    "sensors/cap.py",
    "command/settings.py",
    "command/incidents.py",
    "command/correlation.py",
    "command/feed_protocol.py",
    "command/feed_scope.py",
    "command/client_buffer.py",
    "command/ws_guard.py",
    "command/http_guard.py",
    "command/client_address.py",
    "command/production.py",
    "command/api_routes.py",
    "command/auth.py",
    "command/broker_accounts.py",
    "command/demo_city.py",
    "command/simulation.py",
    "command/imports.py",
    "dispatch/units.py",
    "dispatch/plans.py",
    "dispatch/planner.py",
    "dispatch/kpi.py",
    "dispatch/progress.py",
    "dispatch/orders.py",
    "dispatch/tasks.py",
]
FORBIDDEN = {"asyncio", "aiohttp", "asyncpg", "paho", "aiomqtt", "websockets", "socket", "subprocess"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
            # A pure module may import another module only if that one is pure too.
            if node.module.startswith(("command.", "sensors.", "dispatch.")):
                target = node.module.replace(".", "/") + ".py"
                assert target in PURE, f"{path.name} imports non-pure module {node.module}"
    return roots


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    roots = imported_roots(ROOT / module)
    assert not roots & FORBIDDEN, f"{module} imports {sorted(roots & FORBIDDEN)}"


def test_sensors_and_dispatch_never_import_command() -> None:
    for package in ("sensors", "dispatch"):
        for path in (ROOT / package).glob("**/*.py"):
            assert "command" not in imported_roots(path), f"{path} imports command"
