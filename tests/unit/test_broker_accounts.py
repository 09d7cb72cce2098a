"""Broker accounts: Mosquitto's hash format, each role's topics, the generated files."""

from __future__ import annotations

import base64

import pytest

from command.broker_accounts import (
    SERVER_USERNAME,
    Account,
    Grant,
    Role,
    acl_file,
    check_password,
    device_username,
    grants_for,
    hash_password,
    parse_registry,
    password_file,
    registry_text,
)

# Written by `mosquitto_passwd -b` (Debian's mosquitto 2.0.11), one at its
# default 101 iterations and one with `-I 1000`.
MOSQUITTO_PASSWD_LINES = {
    ("sensors/S-1", "correct horse battery staple"): "$7$101$b2cfC5JCXW6Q6Dyx$KV1fD2z75aWr1bTkFNkrQcF/Yj/yjhN"
    "COfWVfph3kTMInAGcxFZxui3gDU9Sz0tBzj+s9GHlVinLkmZVvgdFXQ==",
    ("x", "y"): "$7$1000$trNstFysX0uLNAfr$wouGLJRDqF1ftMKXQ6ZkDhzmeIl68GyPb12dxEED/MXzMY5qb412hqA/cYBxNEX"
    "tUt+xk/ta+o0UmpFcOD6uVw==",
}


@pytest.mark.parametrize(("login", "line"), MOSQUITTO_PASSWD_LINES.items())
def test_our_hash_is_the_one_mosquitto_passwd_writes(login: tuple[str, str], line: str) -> None:
    _, password = login
    _, _, iterations, salt, _ = line.split("$")
    assert hash_password(password, base64.b64decode(salt), int(iterations)) == line
    assert check_password(password, line)
    assert not check_password(password + " ", line)


def test_a_fresh_hash_has_mosquittos_shape() -> None:
    hashed = hash_password("secret", b"\x01" * 12)
    _, seven, iterations, salt, digest = hashed.split("$")
    assert (seven, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(digest)) == 64
    assert not check_password("secret", "plain text")


def test_a_sensor_writes_only_its_alarm_and_state() -> None:
    assert grants_for(Role.SENSOR, "sensors/S-1") == (
        Grant("write", "sensors/S-1/alarm"),
        Grant("write", "sensors/S-1/state"),
    )


def test_a_unit_writes_its_position_and_status_and_reads_only_its_orders() -> None:
    assert grants_for(Role.UNIT, "units/U-1") == (
        Grant("write", "units/U-1/position"),
        Grant("write", "units/U-1/status"),
        Grant("read", "units/U-1/dispatch"),
    )


def test_a_cap_feed_writes_only_its_own_topic() -> None:
    assert grants_for(Role.CAP_FEED, "cap/usgs") == (Grant("write", "cap/usgs"),)


def test_the_server_reads_device_topics_writes_orders_and_cannot_forge_an_alarm() -> None:
    grants = grants_for(Role.SERVER, SERVER_USERNAME)
    writes = {g.topic for g in grants if "write" in g.access}
    reads = {g.topic for g in grants if "read" in g.access}
    assert writes == {"units/+/dispatch", "emergency/drain/+"}
    assert {"sensors/+/alarm", "cap/+", "$share/+/sensors/+/alarm", "units/+/status"} <= reads
    assert not any(topic.startswith("sensors/") for topic in writes)


def test_usernames_carry_the_class_so_a_sensor_and_a_unit_may_share_an_id() -> None:
    assert device_username(Role.SENSOR, "7") == "sensors/7"
    assert device_username(Role.UNIT, "7") == "units/7"
    with pytest.raises(ValueError, match="':'"):
        device_username(Role.SENSOR, "a:b")  # the password file's separator
    with pytest.raises(ValueError, match="valid id"):
        device_username(Role.SENSOR, "a/b")
    with pytest.raises(ValueError, match="not devices"):
        device_username(Role.SERVER, "x")


@pytest.mark.parametrize(
    ("role", "username"),
    [
        (Role.UNIT, "sensors/S-1"),  # a unit posing as a sensor
        (Role.SENSOR, "sensors/S-1/alarm"),
        (Role.SENSOR, "sensors/#"),
        (Role.SENSOR, "S-1"),
        (Role.SERVER, "sensors/S-1"),
        (Role.ADMIN, "ops team"),
    ],
)
def test_an_account_whose_name_does_not_fit_its_role_is_refused(role: Role, username: str) -> None:
    with pytest.raises(ValueError):
        Account(username, role, hash_password("x", b"s" * 12))


def _accounts() -> list[Account]:
    return [
        Account("units/U-1", Role.UNIT, hash_password("u", b"1" * 12)),
        Account("sensors/S-1", Role.SENSOR, hash_password("s", b"2" * 12)),
        Account(SERVER_USERNAME, Role.SERVER, hash_password("v", b"3" * 12)),
    ]


def test_the_acl_has_one_block_per_account_and_no_pattern_or_global_rule() -> None:
    text = acl_file(_accounts())
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not any(line.startswith("pattern") for line in rules)
    assert rules[0].startswith("user ")  # nothing granted outside a user block
    block = text.split("user sensors/S-1\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == ["topic write sensors/S-1/alarm", "topic write sensors/S-1/state"]


def test_the_password_file_holds_hashes_and_the_registry_round_trips() -> None:
    accounts = _accounts()
    lines = password_file(accounts).splitlines()
    assert lines[0].startswith("emergency-server:$7$101$")
    assert len(lines) == 3
    assert parse_registry(registry_text(accounts)) == {a.username: a for a in accounts}
    assert "hash" not in repr(accounts[0]) and accounts[0].password_hash not in repr(accounts[0])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"accounts": {}}',
        '{"accounts": [{"username": "sensors/S-1", "role": "nope", "hash": "x"}]}',
    ],
)
def test_a_damaged_registry_is_reported(text: str) -> None:
    with pytest.raises(ValueError, match="registry is damaged"):
        parse_registry(text)
