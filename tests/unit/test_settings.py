"""Settings for running several instances: names, share group, listener URL."""

from __future__ import annotations

import pytest

from command.settings import load

BASE = {"EMERGENCY_DATABASE_URL": "postgresql://u@db/x", "EMERGENCY_MQTT_URL": "mqtt://broker:1883"}


def test_the_instance_name_makes_the_client_id_and_the_listener_name() -> None:
    settings = load(BASE | {"EMERGENCY_INSTANCE": "cmd-a.2_x"})
    assert settings.instance == "cmd-a.2_x"
    assert settings.mqtt_client_id == "emergency-server-cmd-a.2_x"
    assert settings.feed_application_name == "emergency-feed-cmd-a.2_x"


def test_the_instance_defaults_to_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.node", lambda: "host-7")
    assert load(BASE).instance == "host-7"
    assert load(BASE | {"EMERGENCY_INSTANCE": ""}).instance == "host-7"


@pytest.mark.parametrize("name", ["a/b", "a b", "a+", "#", "é", "x" * 49, "a:b"])
def test_an_instance_name_outside_the_alphabet_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="EMERGENCY_INSTANCE"):
        load(BASE | {"EMERGENCY_INSTANCE": name})


def test_a_host_name_that_is_no_valid_instance_name_asks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.node", lambda: "")
    with pytest.raises(ValueError, match="EMERGENCY_INSTANCE"):
        load(BASE)


def test_the_share_group_defaults_to_emergency_and_may_be_empty() -> None:
    assert load(BASE | {"EMERGENCY_INSTANCE": "a"}).mqtt_share_group == ""
    assert load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_MQTT_SHARE_GROUP": ""}).mqtt_share_group == ""
    with pytest.raises(ValueError, match="EMERGENCY_MQTT_SHARE_GROUP"):
        load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_MQTT_SHARE_GROUP": "a/b"})


def test_listen_and_migrations_use_the_direct_url_when_given_one() -> None:
    plain = load(BASE | {"EMERGENCY_INSTANCE": "a"})
    assert plain.direct_url == "postgresql://u@db/x"
    direct = load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_DIRECT_DATABASE_URL": "postgresql://u@pg/x"})
    assert direct.direct_url == "postgresql://u@pg/x"
    assert direct.database_url == "postgresql://u@db/x"  # the pool's, e.g. through pgbouncer
    assert "u@pg" not in repr(direct)  # may carry a password: never in a log
