"""Settings for running several instances: names, share group, listener URL."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from command.settings import MqttTarget, load

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


def test_plain_subscriptions_by_default_and_a_share_group_only_when_named() -> None:
    assert load(BASE | {"EMERGENCY_INSTANCE": "a"}).mqtt_share_group == ""
    assert load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_MQTT_SHARE_GROUP": ""}).mqtt_share_group == ""
    assert (
        load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_MQTT_SHARE_GROUP": "ops"}).mqtt_share_group
        == "ops"
    )
    with pytest.raises(ValueError, match="EMERGENCY_MQTT_SHARE_GROUP"):
        load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_MQTT_SHARE_GROUP": "a/b"})


def test_listen_and_migrations_use_the_direct_url_when_given_one() -> None:
    plain = load(BASE | {"EMERGENCY_INSTANCE": "a"})
    assert plain.direct_url == "postgresql://u@db/x"
    direct = load(BASE | {"EMERGENCY_INSTANCE": "a", "EMERGENCY_DIRECT_DATABASE_URL": "postgresql://u@pg/x"})
    assert direct.direct_url == "postgresql://u@pg/x"
    assert direct.database_url == "postgresql://u@db/x"  # the pool's, e.g. through pgbouncer
    assert "u@pg" not in repr(direct)  # may carry a password: never in a log


# --- the broker URL's login ---------------------------------------------------------------


def test_the_mqtt_login_is_percent_decoded() -> None:
    target = MqttTarget.from_url("mqtt://sensors%2FS-1:p%40ss%2Fw%3Ard%25@broker.example:8883")
    assert (target.host, target.port) == ("broker.example", 8883)
    assert target.username == "sensors/S-1"
    assert target.password == "p@ss/w:rd%"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("sensors/S-1", "a@b/c:d%e f#g?h"),
        ("emergency-server", "Xy_-9" * 5),
        ("über", "pässwörd"),
        ("u", ""),
    ],
)
def test_a_login_quoted_into_a_url_comes_back_as_it_was(username: str, password: str) -> None:
    url = f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@127.0.0.1:1883"
    target = MqttTarget.from_url(url)
    assert (target.username, target.password) == (username, password)
    assert (target.host, target.port) == ("127.0.0.1", 1883)


def test_an_mqtt_url_without_a_login_or_port() -> None:
    target = MqttTarget.from_url("mqtt://broker")
    assert (target.host, target.port, target.username, target.password) == ("broker", 1883, None, None)
    only_user = MqttTarget.from_url("tcp://sensors%2FS-2@broker:1884")
    assert (only_user.username, only_user.password, only_user.port) == ("sensors/S-2", None, 1884)


def test_the_loggable_mqtt_url_quotes_the_user_and_leaves_out_the_password() -> None:
    target = MqttTarget.from_url("mqtt://sensors%2FS-1:secret%40x@broker:1883")
    assert target.url() == "mqtt://sensors%2FS-1@broker:1883"
    assert "secret" not in target.url() and "secret" not in repr(target)
    assert MqttTarget.from_url(target.url()).username == "sensors/S-1"


def test_the_server_reads_a_decoded_login_from_the_environment() -> None:
    settings = load(BASE | {"EMERGENCY_MQTT_URL": "mqtt://emergency-server:p%2Fw%40rd@broker:1883"})
    assert (settings.mqtt.username, settings.mqtt.password) == ("emergency-server", "p/w@rd")
