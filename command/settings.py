"""Settings from the environment, parsed once at the edge into a frozen value.

Pure: reads only the mapping it is given, so tests pass their own.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where the broker is and how we log in to it."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        """Parse ``mqtt://[user:pass@]host[:port]``.

        Raises:
            ValueError: the URL is not an mqtt:// URL.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"EMERGENCY_MQTT_URL must be mqtt://host:port, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("EMERGENCY_MQTT_URL has no host")
        return cls(
            host=parts.hostname,
            port=parts.port or 1883,
            username=parts.username,
            password=parts.password,
        )

    def url(self) -> str:
        """The URL without the password (safe to log)."""
        user = f"{self.username}@" if self.username else ""
        return f"mqtt://{user}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to know about its surroundings."""

    # Both may carry passwords: kept out of repr so they never reach a log.
    database_url: str | None = field(repr=False)
    mqtt_url: str | None = field(repr=False)
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    data_dir: Path = Path("var")
    # A fixed client id per instance is what makes the broker keep our
    # session (and the alarms queued in it) while we are away.
    instance: str = field(default_factory=platform.node)
    session_expiry_s: int = 7 * 24 * 3600
    token_ttl_s: int = 12 * 3600
    # Ingest groups alarms arriving within this window into one transaction.
    batch_window_ms: float = 5.0
    batch_max: int = 500
    # The broker sends at most this many unacknowledged QoS 1 messages; it is
    # also the bound of the ingest queue, which therefore can never overflow.
    receive_maximum: int = 1000
    client_queue_max: int = 1000
    # Units whose last position is older than this are not recommended.
    position_max_age_s: int = 900
    # Response-time SLA targets for GET /api/stats (dispatch/kpi.py): NFPA 1221
    # alarm processing, NFPA 1710 turnout (the fire figure) and travel.
    sla_dispatch_s: int = 60
    sla_turnout_s: int = 80
    sla_travel_s: int = 240
    plans_path: Path = field(
        default_factory=lambda: Path(__file__).resolve().parent.parent / "dispatch" / "plans.toml"
    )
    correlation_rules_path: Path = field(
        default_factory=lambda: Path(__file__).resolve().parent / "rules" / "correlation.toml"
    )
    frontend_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent / "frontend")

    def with_urls(self, database_url: str, mqtt_url: str) -> Settings:
        return replace(self, database_url=database_url, mqtt_url=mqtt_url)

    @property
    def mqtt(self) -> MqttTarget:
        if self.mqtt_url is None:
            raise ValueError("no MQTT URL configured")
        return MqttTarget.from_url(self.mqtt_url)

    @property
    def mqtt_client_id(self) -> str:
        return f"emergency-server-{self.instance}"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment).

    Raises:
        ValueError: a variable is present but malformed.
    """
    env = os.environ if env is None else env
    mqtt_url = env.get("EMERGENCY_MQTT_URL") or None
    if mqtt_url:
        MqttTarget.from_url(mqtt_url)  # fail at start-up, not at first connect
    rules_path = env.get("EMERGENCY_CORRELATION_RULES")
    plans_path = env.get("EMERGENCY_PLANS")
    settings = Settings(
        database_url=env.get("EMERGENCY_DATABASE_URL") or None,
        mqtt_url=mqtt_url,
        http_host=env.get("EMERGENCY_HTTP_HOST", "127.0.0.1"),
        http_port=_int(env, "EMERGENCY_HTTP_PORT", 8080),
        data_dir=Path(env.get("EMERGENCY_DATA_DIR", "var")),
        instance=env.get("EMERGENCY_INSTANCE") or platform.node(),
        token_ttl_s=_int(env, "EMERGENCY_TOKEN_TTL_S", 12 * 3600),
        position_max_age_s=_int(env, "EMERGENCY_POSITION_MAX_AGE_S", 900),
        sla_dispatch_s=_int(env, "EMERGENCY_SLA_DISPATCH_S", 60),
        sla_turnout_s=_int(env, "EMERGENCY_SLA_TURNOUT_S", 80),
        sla_travel_s=_int(env, "EMERGENCY_SLA_TRAVEL_S", 240),
    )
    for name, value in (
        ("EMERGENCY_SLA_DISPATCH_S", settings.sla_dispatch_s),
        ("EMERGENCY_SLA_TURNOUT_S", settings.sla_turnout_s),
        ("EMERGENCY_SLA_TRAVEL_S", settings.sla_travel_s),
    ):
        if value <= 0:  # fail at start-up, not at the first GET /api/stats
            raise ValueError(f"{name} must be > 0, got {value}")
    if plans_path:
        settings = replace(settings, plans_path=Path(plans_path))
    return replace(settings, correlation_rules_path=Path(rules_path)) if rules_path else settings
