"""Pure modules import no I/O library (design section 4), checked by parsing them."""

from __future__ import annotations

import ast
import sys
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
OURS = ("command", "sensors", "dispatch")
# Importing by a name computed at run time would get past any reading of the source.
DYNAMIC = {"import_module", "__import__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> list[str]:
    name = _module_name(path).split(".")
    return name if path.name == "__init__.py" else name[:-1]


def imported_names(path: Path) -> set[str]:
    """Every dotted name the module imports, in any form, absolute.

    ``import a.b`` gives a and a.b; ``from a import b`` gives a and a.b (b may
    be a module or a name in a); relative imports are resolved against the
    module's package; ``importlib.import_module("x")`` and ``__import__("x")``
    give x, and with anything but a literal name fail the check.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        names.update(".".join(parts[: n + 1]) for n in range(len(parts)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path)
                assert node.level <= len(package), f"{path}: relative import beyond the top package"
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                assert node.module is not None
                module = node.module
            add(module)
            for alias in node.names:
                if alias.name != "*":
                    add(f"{module}.{alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in DYNAMIC:
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{path}:{node.lineno}: {called}() of a name computed at run time"
                )
                add(first.value)
    return names


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_names(path)}


def our_modules(names: set[str]) -> set[str]:
    """The files of our packages that ``names`` import (a name that is a module or a package)."""
    files = set()
    for name in names:
        if name.split(".")[0] not in OURS:
            continue
        stem = name.replace(".", "/")
        for candidate in (f"{stem}.py", f"{stem}/__init__.py"):
            if (ROOT / candidate).is_file():
                files.add(candidate)
    return files


def impure_imports(path: Path) -> list[str]:
    """What ``path`` imports that a pure module may not: an I/O library, or one of our
    modules that is not pure itself (package ``__init__`` files count as pure: they
    hold a docstring, and test_package_inits_import_nothing keeps it so)."""
    names = imported_names(path)
    wrong = sorted(n for n in names if n.split(".")[0] in FORBIDDEN)
    wrong += sorted(f for f in our_modules(names) if f not in PURE and not f.endswith("/__init__.py"))
    return wrong


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    assert impure_imports(ROOT / module) == [], f"{module} imports what a pure module may not"


def test_package_inits_import_nothing() -> None:
    for package in OURS:
        path = ROOT / package / "__init__.py"
        assert imported_names(path) == set(), f"{path} imports something"


PLANTS = [
    "from command import db",
    "import command.db",
    "import command.db as database",
    "from command.db import register_codecs",
    "from . import db",
    "from .db import register_codecs",
    "import asyncio",
    "import asyncio.subprocess",
    "from asyncio import sleep",
    "from paho.mqtt import client",
    "import importlib\nimportlib.import_module('asyncpg')",
    "from importlib import import_module\nimport_module('command.db')",
    "__import__('socket')",
]


@pytest.fixture
def tree_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of our packages that the checks read instead of the real tree."""
    for package in OURS:
        (tmp_path / package).mkdir()
        for source in (ROOT / package).glob("*.py"):
            (tmp_path / package / source.name).write_text(source.read_text())
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    return tmp_path


@pytest.mark.parametrize("plant", PLANTS)
def test_the_check_catches_every_import_form(plant: str, tree_copy: Path) -> None:
    """An import of a forbidden library or an impure module of ours, planted in
    (a copy of) a pure module, in any of its forms, fails the check."""
    pure = tree_copy / "command" / "feed_scope.py"
    assert impure_imports(pure) == []
    pure.write_text(pure.read_text() + "\n" + plant + "\n")
    assert impure_imports(pure), plant


def test_the_check_refuses_an_import_of_a_computed_name(tree_copy: Path) -> None:
    pure = tree_copy / "command" / "feed_scope.py"
    pure.write_text(pure.read_text() + "\nimport importlib\nname = 'db'\nimportlib.import_module(name)\n")
    with pytest.raises(AssertionError, match="import_module\\(\\) of a name computed at run time"):
        impure_imports(pure)


def test_sensors_and_dispatch_never_import_command() -> None:
    for package in ("sensors", "dispatch"):
        for path in (ROOT / package).glob("**/*.py"):
            assert "command" not in imported_roots(path), f"{path} imports command"
