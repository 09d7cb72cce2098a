"""Broker accounts: who may log in to the MQTT broker, and which topics each may use.

Pure: turns a set of accounts into the text of Mosquitto's ``password_file``
and ``acl_file`` (and of the registry they are generated from);
``command/services.py`` writes the files and makes the broker re-read them.

Usernames. A device logs in with its topic prefix as username:
``sensors/S-1``, ``units/U-1``, ``cap/<source>``. Sensors and units have
separate id spaces (a sensor and a unit may both be called ``7``), so the
bare id cannot be the username; ``/`` is outside the id alphabet
(``sensors.topics.ID_RE``), so the class and the id never blur. Service
accounts (the server, the demo simulator, an all-topics account for tests)
have plain names without ``/``.

ACL scheme: one ``user`` block per account listing exactly its topics,
regenerated from the registry whenever an account changes. Mosquitto's
``pattern`` lines were the alternative (``pattern write %u/alarm`` with the
usernames above) and would keep the file constant, but a pattern applies to
*every* account: a unit would also get ``units/U-1/alarm`` and a sensor
``sensors/S-1/dispatch``. Harmless topics today, but broader than "a sensor
writes only its alarm and state". The prefix usernames still suit brokers
whose ACLs substitute the username (EMQX ``${username}/alarm``, see
docs/operations.md).

Passwords are generated (never chosen by a person) and stored only as
Mosquitto's own PBKDF2-SHA512 hash (``$7$``, what ``mosquitto_passwd``
writes), computed here so a password never appears on a command line, where
other local users could read it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from sensors.topics import ID_RE, SUBSCRIPTIONS, drain_marker_topic

SERVER_USERNAME = "emergency-server"
SIMULATOR_USERNAME = "emergency-simulator"

# Mosquitto's defaults (mosquitto_passwd writes the same). The iteration count
# protects weak, human-chosen passwords; ours are 192 random bits, which no
# count adds to, while every count is paid by the single-threaded broker at
# each connect (a reconnect storm of thousands of sensors).
HASH_ITERATIONS = 101
SALT_BYTES = 12

# Service account names: no "/" (that marks a device), no ":" (the password
# file's separator), no MQTT wildcards, no spaces.
SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HASH_RE = re.compile(r"^\$7\$[0-9]{1,9}\$[A-Za-z0-9+/=]{4,}\$[A-Za-z0-9+/=]{4,}$")


class Role(StrEnum):
    """What an account is for; its topics follow from the role and the username."""

    SERVER = "server"
    SIMULATOR = "simulator"
    SENSOR = "sensor"
    UNIT = "unit"
    CAP_FEED = "cap"
    # Every topic: for tests (the fixture broker's account) and an operator's
    # debugging session; never created by `emergency up`.
    ADMIN = "admin"


# The topic prefix that is also the username prefix of each device role.
DEVICE_PREFIX: dict[Role, str] = {Role.SENSOR: "sensors", Role.UNIT: "units", Role.CAP_FEED: "cap"}

Access = Literal["read", "write", "readwrite"]


@dataclass(frozen=True, slots=True)
class Grant:
    """One ACL line: ``topic {access} {topic}``."""

    access: Access
    topic: str


def device_username(role: Role, ident: str) -> str:
    """The username of the sensor, unit or CAP feed ``ident``.

    Raises:
        ValueError: ``role`` is not a device role, or ``ident`` is not a valid
            id or cannot be part of a username (``:`` separates a username from
            its hash in Mosquitto's password file).
    """
    if role not in DEVICE_PREFIX:
        raise ValueError(f"{role} accounts are not devices")
    if not ID_RE.match(ident):
        raise ValueError(f"{ident!r} is not a valid id: letters, digits, '_', '.', ':', '-', at most 64")
    if ":" in ident:
        raise ValueError(f"{ident!r}: an MQTT username cannot contain ':' (Mosquitto's password file)")
    return f"{DEVICE_PREFIX[role]}/{ident}"


def _device_id(role: Role, username: str) -> str:
    prefix = DEVICE_PREFIX[role] + "/"
    ident = username.removeprefix(prefix)
    if ident == username or not ID_RE.match(ident) or ":" in ident:
        raise ValueError(f"a {role} account's username is {prefix}<id>, got {username!r}")
    return ident


def grants_for(role: Role, username: str) -> tuple[Grant, ...]:
    """Every topic the account ``username`` of ``role`` may use; all else is denied.

    Raises:
        ValueError: ``username`` does not fit ``role``.
    """
    ident = _device_id(role, username) if role in DEVICE_PREFIX else ""
    if role not in DEVICE_PREFIX and not SERVICE_NAME_RE.match(username):
        raise ValueError(f"a {role} account's name is 1-64 letters, digits, '_', '.', '-'; got {username!r}")
    if role is Role.SENSOR:
        return (Grant("write", f"sensors/{ident}/alarm"), Grant("write", f"sensors/{ident}/state"))
    if role is Role.UNIT:
        return (
            Grant("write", f"units/{ident}/position"),
            Grant("write", f"units/{ident}/status"),
            Grant("read", f"units/{ident}/dispatch"),
        )
    if role is Role.CAP_FEED:
        return (Grant("write", f"cap/{ident}"),)
    if role is Role.SERVER:
        reads = [Grant("read", topic) for topic in SUBSCRIPTIONS]
        # The shared-subscription spelling too: Mosquitto 2.0's acl_file checks
        # only what is delivered (by the message's own topic), but brokers that
        # check the SUBSCRIBE itself see the filter with its $share prefix.
        reads += [Grant("read", f"$share/+/{topic}") for topic in SUBSCRIPTIONS]
        return (
            *reads,
            Grant("write", "units/+/dispatch"),
            # `emergency drain-session` sends itself an end marker here.
            Grant("readwrite", drain_marker_topic("+")),
        )
    if role is Role.SIMULATOR:
        # Exactly what command/simulation.py publishes.
        return (Grant("write", "sensors/+/alarm"), Grant("write", "units/+/position"))
    assert role is Role.ADMIN
    return (Grant("readwrite", "#"),)


@dataclass(frozen=True, slots=True)
class Account:
    """A broker login: its username, its role and the hash of its password.

    Raises:
        ValueError: the username does not fit the role, or the hash is not
            Mosquitto's ``$7$`` format.
    """

    username: str
    role: Role
    # A hash, not the password; still kept out of repr and so out of logs.
    password_hash: str = field(repr=False)

    def __post_init__(self) -> None:
        grants_for(self.role, self.username)  # validates the username
        if not _HASH_RE.match(self.password_hash):
            raise ValueError(f"account {self.username}: the password hash is not Mosquitto's $7$ format")

    @property
    def grants(self) -> tuple[Grant, ...]:
        return grants_for(self.role, self.username)


def hash_password(password: str, salt: bytes, iterations: int = HASH_ITERATIONS) -> str:
    """``password`` in Mosquitto's ``$7$`` format: PBKDF2-HMAC-SHA512 with ``salt``.

    ``$7$<iterations>$<base64 salt>$<base64 64-byte digest>``, the line
    ``mosquitto_passwd`` writes (tests/unit/test_broker_accounts.py checks a
    hash it wrote).
    """
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (in constant time)."""
    if not _HASH_RE.match(password_hash):
        return False
    _, _, iterations, salt, _ = password_hash.split("$")
    expected = hash_password(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(expected, password_hash)


def _sorted(accounts: Iterable[Account]) -> list[Account]:
    return sorted(accounts, key=lambda a: a.username)


def password_file(accounts: Iterable[Account]) -> str:
    """Mosquitto's ``password_file``: ``username:hash`` per line."""
    return "".join(f"{a.username}:{a.password_hash}\n" for a in _sorted(accounts))


def acl_file(accounts: Iterable[Account]) -> str:
    """Mosquitto's ``acl_file``: a ``user`` block per account, exactly its grants.

    Nothing is granted outside a ``user`` block, so a client the password
    file does not know gets nothing even if anonymous logins were allowed.
    """
    lines = [
        "# Generated by the emergency command server from accounts.json; edits are overwritten.",
        "# Anything not granted here is denied.",
    ]
    for account in _sorted(accounts):
        lines += ["", f"# {account.role}", f"user {account.username}"]
        lines += [f"topic {g.access} {g.topic}" for g in account.grants]
    return "\n".join(lines) + "\n"


def registry_text(accounts: Iterable[Account]) -> str:
    """The registry the two files are generated from (JSON; hashes, never passwords)."""
    rows = [{"username": a.username, "role": str(a.role), "hash": a.password_hash} for a in _sorted(accounts)]
    return json.dumps({"accounts": rows}, indent=2) + "\n"


def parse_registry(text: str) -> dict[str, Account]:
    """Read :func:`registry_text` back. Returns username -> account.

    Raises:
        ValueError: not a registry, or an entry is invalid (the message names it).
    """
    try:
        doc = json.loads(text)
        rows = doc["accounts"]
        if not isinstance(rows, list):
            raise TypeError("accounts is not a list")
        accounts = [Account(str(r["username"]), Role(r["role"]), str(r["hash"])) for r in rows]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"broker account registry is damaged: {exc}") from None
    return {a.username: a for a in accounts}
