"""`emergency serve` refuses to start on a broken correlation rules or plans file,
naming the file and what is wrong with it, and never starts serving."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from command.services import free_port
from command.settings import Settings, client_id_for
from tests.integration.helpers import EMERGENCY, ROOT, SESSIONS, emergency_env

DEFAULTS = Settings(database_url=None, mqtt_url=None)
RULES = DEFAULTS.correlation_rules_path.read_text()
PLANS = DEFAULTS.plans_path.read_text()

BROKEN = [
    pytest.param(
        "EMERGENCY_CORRELATION_RULES",
        RULES.replace("radius_m = 300", "radius_m = -300", 1),
        "family 'fire': radius_m must be positive",
        id="rules-bad-value",
    ),
    pytest.param(
        "EMERGENCY_CORRELATION_RULES",
        RULES.replace('kinds = ["fire", "smoke"]', 'kinds = ["fire"]', 1),
        "no family for kinds: smoke",
        id="rules-kind-left-out",
    ),
    pytest.param("EMERGENCY_CORRELATION_RULES", "[families.fire\n", "rules file: ", id="rules-not-toml"),
    pytest.param(
        "EMERGENCY_PLANS",
        PLANS.replace("[plans.fire.Unknown]", "[plans.fire.Unknown]\nradius = 5", 1),
        "plan fire/Unknown: unknown field 'radius'",
        id="plans-unknown-field",
    ),
    pytest.param("EMERGENCY_PLANS", "[plans\n", "plans file: ", id="plans-not-toml"),
]


@pytest.mark.parametrize(("variable", "text", "problem"), BROKEN)
def test_serve_refuses_a_broken_rules_or_plans_file(
    database_url: str, mqtt_url: str, tmp_path: Path, variable: str, text: str, problem: str
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    instance = f"badfile-{uuid.uuid4().hex[:6]}"
    SESSIONS.append((mqtt_url, client_id_for(instance)))  # in case it got as far as the broker
    env = emergency_env(
        EMERGENCY_DATABASE_URL=database_url,
        EMERGENCY_MQTT_URL=mqtt_url,
        EMERGENCY_HTTP_PORT=str(free_port()),
        EMERGENCY_INSTANCE=instance,
        EMERGENCY_MQTT_SHARE_GROUP=instance,
    )
    env[variable] = str(broken)
    result = subprocess.run(
        [EMERGENCY, "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stderr
    assert "serving on" not in result.stderr, result.stderr
    # The last line says which file and what is wrong, whatever came before it.
    last = result.stderr.strip().splitlines()[-1]
    assert f"{broken}: {problem}" in last, result.stderr


def test_serve_refuses_a_missing_plans_file(database_url: str, mqtt_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-plans.toml"
    instance = f"nofile-{uuid.uuid4().hex[:6]}"
    SESSIONS.append((mqtt_url, client_id_for(instance)))
    env = emergency_env(
        EMERGENCY_DATABASE_URL=database_url,
        EMERGENCY_MQTT_URL=mqtt_url,
        EMERGENCY_HTTP_PORT=str(free_port()),
        EMERGENCY_INSTANCE=instance,
        EMERGENCY_PLANS=str(missing),
    )
    result = subprocess.run(
        [EMERGENCY, "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert str(missing) in last and "No such file" in last, result.stderr
