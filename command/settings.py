"""Settings from the environment, parsed once at the edge into a frozen value.

Pure: reads only the mapping it is given, so tests pass their own.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from sensors.topics import GROUP_RE

# Instance names become the MQTT client id (``emergency-server-<instance>``)
# and the feed listener's application_name (``emergency-feed-<instance>``,
# which PostgreSQL cuts at 63 bytes): a small alphabet, at most 48 characters.
INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")


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

        The user name and password are percent-decoded, as in any URL: a
        device's ``sensors/S-1`` is written ``sensors%2FS-1``, a password's
        ``@``, ``:`` or ``/`` as ``%40``, ``%3A``, ``%2F``
        (``urllib.parse.quote(..., safe="")`` writes them so).

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
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def url(self) -> str:
        """The URL without the password (safe to log)."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
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
    # Instances in one MQTT shared-subscription group split the ingest (each
    # message goes to one of them); "" subscribes plainly (each gets all).
    # Empty (plain subscriptions) by default: Mosquitto 2.0 does not restore a
    # session's *shared* subscriptions after its own restart, so alarms sent
    # before the server resubscribes are dropped (make chaos, broker case).
    # Several instances opt in to a group (docs/scaling.md).
    mqtt_share_group: str = ""
    # For what needs a database session of its own: the feed's LISTEN and the
    # migrations' session advisory lock. None means database_url. Behind
    # pgbouncer in transaction pooling mode, point this at PostgreSQL itself
    # (or a session-mode pool): docs/scaling.md.
    direct_database_url: str | None = field(default=None, repr=False)
    session_expiry_s: int = 7 * 24 * 3600
    token_ttl_s: int = 12 * 3600
    # Each ingest transaction takes every alarm that arrived while the
    # previous one committed, up to this many (command/ingest.py).
    batch_max: int = 500
    # The broker sends at most this many unacknowledged QoS 1 messages; it is
    # also the bound of the ingest queue, which therefore can never overflow.
    receive_maximum: int = 1000
    client_queue_max: int = 1000
    # The server pings every console this often; one that does not answer
    # within half of it is dropped (so within 15 s by default).
    ws_heartbeat_s: float = 10.0
    # The outbox is the replay window: events older than this are deleted,
    # and a console further behind than that gets a fresh snapshot.
    event_retention_h: float = 24.0
    # Pages on other origins allowed to open /ws (the server's own origin
    # always is): e.g. a wall display served from another host.
    allowed_origins: frozenset[str] = frozenset()
    # "production" refuses to start with demo accounts or weak secrets
    # (command/production.py); anything else is "development".
    mode: str = "development"
    # The schema owner's URL, for migrations (and HTTP road imports, which
    # stage in a schema of their own): the server's own URL then needs only
    # DML (command/db_roles.py). None: migrations use direct_url.
    migrate_database_url: str | None = field(default=None, repr=False)
    # Proxies whose X-Forwarded-For is believed when recording a client's
    # address (command/client_address.py); nobody's by default.
    trusted_proxies: tuple[str, ...] = ()
    # Who may read GET /metrics (counts of alarms, dead letters, consoles):
    # the monitoring network's scraper, by its TCP address; the host itself
    # by default.
    metrics_networks: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # Audit rows are kept this long (at least 183 days: command/audit.py).
    audit_retention_days: int = 400
    # Units whose last position is older than this are not recommended.
    position_max_age_s: int = 900
    # Response-time SLA targets for GET /api/stats (dispatch/kpi.py): NFPA 1221
    # alarm processing, NFPA 1710 turnout (the fire figure) and travel.
    sla_dispatch_s: int = 60
    sla_turnout_s: int = 80
    sla_travel_s: int = 240
    # Raster tiles for a centre with its own tile server: a Leaflet URL template
    # with {z}, {x} and {y}. Empty keeps the console's offline basemap (districts
    # and roads from our own database). Served to the console by GET /api/config.
    tile_url: str = ""
    tile_attribution: str = ""
    plans_path: Path = field(
        default_factory=lambda: Path(__file__).resolve().parent.parent / "dispatch" / "plans.toml"
    )
    correlation_rules_path: Path = field(
        default_factory=lambda: Path(__file__).resolve().parent / "rules" / "correlation.toml"
    )
    frontend_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent / "frontend")

    def __post_init__(self) -> None:
        if not INSTANCE_RE.match(self.instance):
            raise ValueError(
                "EMERGENCY_INSTANCE must be 1-48 letters, digits, '-', '_' or '.'"
                f" (it defaults to the host name), got {self.instance!r}"
            )
        if self.mqtt_share_group and not GROUP_RE.match(self.mqtt_share_group):
            raise ValueError(
                "EMERGENCY_MQTT_SHARE_GROUP must be at most 64 letters, digits, '-', '_' or '.'"
                f" (empty for plain subscriptions), got {self.mqtt_share_group!r}"
            )

    def with_urls(self, database_url: str, mqtt_url: str) -> Settings:
        return replace(self, database_url=database_url, mqtt_url=mqtt_url)

    @property
    def mqtt(self) -> MqttTarget:
        if self.mqtt_url is None:
            raise ValueError("no MQTT URL configured")
        return MqttTarget.from_url(self.mqtt_url)

    @property
    def mqtt_client_id(self) -> str:
        return client_id_for(self.instance)

    @property
    def direct_url(self) -> str | None:
        """Where to LISTEN and migrate: ``direct_database_url``, else ``database_url``."""
        return self.direct_database_url or self.database_url

    @property
    def feed_application_name(self) -> str:
        """The feed listener's ``application_name``, to find it in ``pg_stat_activity``."""
        return f"emergency-feed-{self.instance}"


def client_id_for(instance: str) -> str:
    """The MQTT client id, and so the broker session, of the instance named ``instance``."""
    return f"emergency-server-{instance}"


def _networks(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of addresses or networks; ``default`` when unset."""
    if name not in env:
        return default
    entries = tuple(p.strip() for p in env[name].split(",") if p.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{name}: {entry!r} is not an address or network") from None
    return entries


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


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
        mqtt_share_group=env.get("EMERGENCY_MQTT_SHARE_GROUP", ""),
        direct_database_url=env.get("EMERGENCY_DIRECT_DATABASE_URL") or None,
        token_ttl_s=_int(env, "EMERGENCY_TOKEN_TTL_S", 12 * 3600),
        position_max_age_s=_int(env, "EMERGENCY_POSITION_MAX_AGE_S", 900),
        sla_dispatch_s=_int(env, "EMERGENCY_SLA_DISPATCH_S", 60),
        sla_turnout_s=_int(env, "EMERGENCY_SLA_TURNOUT_S", 80),
        sla_travel_s=_int(env, "EMERGENCY_SLA_TRAVEL_S", 240),
        tile_url=env.get("EMERGENCY_TILE_URL", "").strip(),
        tile_attribution=env.get("EMERGENCY_TILE_ATTRIBUTION", "").strip(),
        client_queue_max=_int(env, "EMERGENCY_CLIENT_QUEUE_MAX", 1000),
        ws_heartbeat_s=_float(env, "EMERGENCY_WS_HEARTBEAT_S", 10.0),
        event_retention_h=_float(env, "EMERGENCY_EVENT_RETENTION_H", 24.0),
        allowed_origins=frozenset(
            o.strip().rstrip("/") for o in env.get("EMERGENCY_ALLOWED_ORIGINS", "").split(",") if o.strip()
        ),
    )
    mode = env.get("EMERGENCY_MODE", "development") or "development"
    if mode not in ("development", "production"):
        raise ValueError(f"EMERGENCY_MODE must be 'development' or 'production', got {mode!r}")
    settings = replace(
        settings,
        mode=mode,
        migrate_database_url=env.get("EMERGENCY_MIGRATE_DATABASE_URL") or None,
        trusted_proxies=_networks(env, "EMERGENCY_TRUSTED_PROXIES", ()),
        metrics_networks=_networks(env, "EMERGENCY_METRICS_NETWORKS", settings.metrics_networks),
        audit_retention_days=_int(env, "EMERGENCY_AUDIT_RETENTION_DAYS", 400),
    )
    if settings.audit_retention_days < 183:  # graded protection: at least six months
        raise ValueError(
            f"EMERGENCY_AUDIT_RETENTION_DAYS must be at least 183, got {settings.audit_retention_days}"
        )
    if not 0 < settings.ws_heartbeat_s <= 20:  # dead consoles must go within 30 s
        raise ValueError(f"EMERGENCY_WS_HEARTBEAT_S must be in (0, 20], got {settings.ws_heartbeat_s}")
    if settings.client_queue_max < 10:
        raise ValueError(f"EMERGENCY_CLIENT_QUEUE_MAX must be at least 10, got {settings.client_queue_max}")
    if settings.event_retention_h <= 0:
        raise ValueError(f"EMERGENCY_EVENT_RETENTION_H must be > 0, got {settings.event_retention_h}")
    for name, value in (
        ("EMERGENCY_SLA_DISPATCH_S", settings.sla_dispatch_s),
        ("EMERGENCY_SLA_TURNOUT_S", settings.sla_turnout_s),
        ("EMERGENCY_SLA_TRAVEL_S", settings.sla_travel_s),
    ):
        if value <= 0:  # fail at start-up, not at the first GET /api/stats
            raise ValueError(f"{name} must be > 0, got {value}")
    tile_url = settings.tile_url
    # A typo here would only show as a blank map in every console: refuse it at start-up.
    if tile_url and (
        not tile_url.startswith(("http://", "https://", "/"))
        or not all(p in tile_url for p in ("{z}", "{x}", "{y}"))
    ):
        raise ValueError(
            "EMERGENCY_TILE_URL must be an http(s):// URL or a path on this server"
            f" with {{z}}, {{x}} and {{y}}, got {tile_url!r}"
        )
    if plans_path:
        settings = replace(settings, plans_path=Path(plans_path))
    return replace(settings, correlation_rules_path=Path(rules_path)) if rules_path else settings
