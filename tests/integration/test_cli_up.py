"""`emergency up` as a user runs it: everything starts, Ctrl-C stops everything, a rerun reuses the data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from command.services import free_port

EMERGENCY = str(Path(sys.executable).with_name("emergency"))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="emergency-up-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")}
    env.update(EMERGENCY_DATA_DIR=str(data_dir), EMERGENCY_HTTP_PORT=str(port), EMERGENCY_INSTANCE="cli-test")
    return env


def _wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"emergency up exited early with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                health: dict[str, object] = json.loads(response.read())
                return health
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def _processes_using(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line and "ps -eo" not in line]


def _run_up_once(data_dir: Path) -> tuple[str, dict[str, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [EMERGENCY, "up", "--no-simulate"],
        env=_env(data_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = _wait_healthy(port, proc)
        assert health["database"] == "ok" and health["broker"] == "ok"
        # Another command finds the private services `up` started in the data folder.
        added = subprocess.run(
            [EMERGENCY, "users", "add", "--username", f"u{port}", "--role", "viewer"],
            env=_env(data_dir, port) | {"EMERGENCY_NEW_PASSWORD": "long enough password"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        refused = subprocess.run(
            [EMERGENCY, "users", "add", "--username", "x", "--role", "field"],
            env=_env(data_dir, port) | {"EMERGENCY_NEW_PASSWORD": "long enough password"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "needs --unit" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    logins = json.loads((data_dir / "demo-logins.json").read_text())
    return output, logins


def test_up_starts_everything_and_ctrl_c_leaves_nothing_behind(data_dir: Path) -> None:
    output, logins = _run_up_once(data_dir)
    assert "Console:  http://127.0.0.1:" in output
    assert set(logins) == {"admin", "commander", "dispatcher", "viewer", "field"}
    for password in logins.values():
        assert password in output  # printed for the person who ran it
    assert "demo city loaded" in output
    assert oct((data_dir / "demo-logins.json").stat().st_mode & 0o777) == "0o600"
    assert _processes_using(data_dir) == []

    # Again: the same data, nothing loaded twice, the same logins.
    output, again = _run_up_once(data_dir)
    assert "demo city loaded" not in output
    assert again == logins
    assert _processes_using(data_dir) == []
