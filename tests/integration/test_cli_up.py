"""`emergency up` as a user runs it: everything starts, Ctrl-C stops everything, a rerun reuses the data."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from command.services import free_port
from tests.integration.helpers import EMERGENCY, processes_using, up_env


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


def _run_up_once(data_dir: Path) -> tuple[str, dict[str, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [EMERGENCY, "up", "--no-simulate"],
        env=up_env(data_dir, port, "cli-test"),
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
            env=up_env(data_dir, port, "cli-test") | {"EMERGENCY_NEW_PASSWORD": "long enough password"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        refused = subprocess.run(
            [EMERGENCY, "users", "add", "--username", "x", "--role", "field"],
            env=up_env(data_dir, port, "cli-test") | {"EMERGENCY_NEW_PASSWORD": "long enough password"},
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


def test_up_starts_everything_and_ctrl_c_leaves_nothing_behind(private_dir: Path) -> None:
    output, logins = _run_up_once(private_dir)
    assert "Console:  http://127.0.0.1:" in output
    assert set(logins) == {"admin", "commander", "dispatcher", "viewer", "field"}
    for password in logins.values():
        assert password in output  # printed for the person who ran it
    assert "demo city loaded" in output
    assert oct((private_dir / "demo-logins.json").stat().st_mode & 0o777) == "0o600"
    assert processes_using(private_dir) == []

    # Again: the same data, nothing loaded twice, the same logins.
    output, again = _run_up_once(private_dir)
    assert "demo city loaded" not in output
    assert again == logins
    assert processes_using(private_dir) == []
