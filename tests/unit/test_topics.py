"""Topic names: the shared-subscription filters every instance subscribes with."""

from __future__ import annotations

import pytest

from sensors.topics import (
    SUBSCRIPTIONS,
    SensorAlarm,
    drain_marker_topic,
    parse_topic,
    shared_subscriptions,
)


def test_shared_subscriptions_prefix_every_filter_with_the_group() -> None:
    assert shared_subscriptions("emergency") == (
        "$share/emergency/sensors/+/alarm",
        "$share/emergency/sensors/+/state",
        "$share/emergency/units/+/position",
        "$share/emergency/units/+/status",
        "$share/emergency/cap/+",
    )
    assert shared_subscriptions("g-1", ("a/+",)) == ("$share/g-1/a/+",)


def test_an_empty_group_means_plain_subscriptions() -> None:
    assert shared_subscriptions("") == SUBSCRIPTIONS


@pytest.mark.parametrize("group", ["a/b", "a+", "#", "with space", "x" * 65, "$share"])
def test_a_group_mqtt_or_we_cannot_spell_is_refused(group: str) -> None:
    with pytest.raises(ValueError, match="share group"):
        shared_subscriptions(group)


def test_a_message_from_a_shared_subscription_carries_its_real_topic() -> None:
    # The broker delivers the PUBLISH with the topic it was published on, not
    # the $share filter, so routing is the same whichever member receives it.
    assert parse_topic("sensors/S-1/alarm") == SensorAlarm("S-1")
    assert parse_topic("$share/emergency/sensors/S-1/alarm") is None


def test_the_drain_marker_topic_is_no_topic_the_server_ingests() -> None:
    topic = drain_marker_topic("emergency-server-a1")
    assert topic == "emergency/drain/emergency-server-a1"
    assert parse_topic(topic) is None
    assert not any(pattern.split("/")[0] == "emergency" for pattern in SUBSCRIPTIONS)
