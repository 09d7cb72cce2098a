"""What ``EMERGENCY_MODE=production`` refuses to start with. Pure.

A production server must not run with secrets anyone could guess or read off
a default, nor with the demo's accounts. The rules, kept few so they are
easy to satisfy and to explain (docs/security.md):

1. the database URL (and the direct URL, if set) carries a password unless
   the host is this machine (loopback or a Unix socket, where the operating
   system vouches for the user);
2. the MQTT URL carries a user name and password (the broker must refuse
   anonymous clients, and our ACL is per account);
3. every password in those URLs has at least 12 characters;
4. no trusted proxy is "everyone" (``0.0.0.0/0``, ``::/0``), which would let
   any client write its own address into the audit log.

Checked against the database at start-up (``command/db_roles.py``): no
enabled demo account, and the server's role is neither a superuser nor the
owner of the audit log (it could drop the append-only triggers).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

from command.settings import Settings

MIN_SECRET_LENGTH = 12
_LOOPBACK_NAMES = frozenset({"localhost"})


def _local(host: str | None) -> bool:
    if not host or host.startswith("/"):
        return True  # a Unix socket
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _database_problems(name: str, url: str) -> list[str]:
    parts = urlsplit(url)
    password = unquote(parts.password or "")
    if not password:
        if not _local(parts.hostname):
            return [f"{name} has no password for the non-local host {parts.hostname}"]
        return []
    if len(password) < MIN_SECRET_LENGTH:
        return [f"{name}'s password is shorter than {MIN_SECRET_LENGTH} characters"]
    return []


def settings_problems(settings: Settings) -> list[str]:
    """Why these settings are not fit for production (empty when they are)."""
    problems: list[str] = []
    if settings.database_url:
        problems += _database_problems("EMERGENCY_DATABASE_URL", settings.database_url)
    if settings.direct_database_url:
        problems += _database_problems("EMERGENCY_DIRECT_DATABASE_URL", settings.direct_database_url)
    if settings.mqtt_url:
        target = settings.mqtt
        if not target.username or not target.password:
            problems.append(
                "EMERGENCY_MQTT_URL has no user name and password: the broker must refuse anonymous clients"
            )
        elif len(target.password) < MIN_SECRET_LENGTH:
            problems.append(f"EMERGENCY_MQTT_URL's password is shorter than {MIN_SECRET_LENGTH} characters")
    for proxy in settings.trusted_proxies:
        if ipaddress.ip_network(proxy, strict=False).prefixlen == 0:
            problems.append(f"EMERGENCY_TRUSTED_PROXIES trusts every address ({proxy})")
    return problems
