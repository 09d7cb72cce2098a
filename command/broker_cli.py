"""Broker accounts from the command line: the MQTT logins of sensors, units and CAP feeds.

    emergency sensors credentials ID...   a new password for registered sensors (first or rotation)
    emergency units credentials ID...     the same for units
    emergency cap credentials SOURCE...   the same for CAP feeds (they publish to cap/SOURCE)
    emergency mqtt accounts               the private broker's accounts and roles
    emergency mqtt revoke USERNAME...     delete accounts (a lost or retired device)

``emergency sensors add`` issues the new sensor's login through :func:`issue`.
With the private broker (no ``EMERGENCY_MQTT_URL``) the account is written to
its folder and a running broker takes it at once. An external broker's
configuration is not ours to write: the password and the line for a Mosquitto
password file are printed for its operator (docs/operations.md).

Passwords are printed once and kept nowhere but in the device; the broker
keeps their hashes.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from collections.abc import Sequence

from command.broker_accounts import SALT_BYTES, Role, device_username, hash_password
from command.services import EmbeddedMosquitto, ServiceError
from command.settings import Settings

# The table a device's id must be registered in before it gets a login.
_REGISTERED_IN = {Role.SENSOR: "sensors", Role.UNIT: "units"}


def _private_broker(settings: Settings) -> EmbeddedMosquitto | None:
    """The private broker ``emergency up`` runs, or None when EMERGENCY_MQTT_URL names another."""
    return EmbeddedMosquitto(settings.data_dir / "mosquitto") if settings.mqtt_url is None else None


def usernames(role: Role, idents: Sequence[str], what: str) -> list[str]:
    """The devices' usernames; a bad id ends the command with the reason."""
    try:
        return [device_username(role, ident) for ident in idents]
    except ValueError as exc:
        raise SystemExit(f"{what}: {exc}") from None


def issue(settings: Settings, role: Role, idents: Sequence[str], what: str) -> None:
    """Give each device in ``idents`` a new random password and print it.

    Args:
        settings: as configured (before the private services' URLs are filled
            in): ``mqtt_url`` None means the private broker.
        role: sensor, unit or CAP feed.
        idents: their ids (CAP: source names).
        what: the command, for messages.
    """
    names = usernames(role, idents, what)
    broker = _private_broker(settings)
    if broker is None:
        print("EMERGENCY_MQTT_URL names an external broker: create these accounts there")
        print("(Mosquitto password-file lines below; ACL and other brokers: docs/operations.md).")
        for name in names:
            password = secrets.token_urlsafe(24)
            print(f"  username {name}  password {password}")
            print(f"    {name}:{hash_password(password, secrets.token_bytes(SALT_BYTES))}")
        return
    try:
        passwords = broker.set_passwords(role, names)
    except ServiceError as exc:
        raise SystemExit(f"{what}: {exc}") from None
    print("MQTT login (the password is shown only now; the broker keeps its hash):")
    for name, password in passwords.items():
        print(f"  username {name}  password {password}")


async def _unregistered(settings: Settings, table: str, idents: Sequence[str]) -> list[str]:
    from command.cli import _connect, _resolved

    database_url = _resolved(settings).database_url
    assert database_url is not None
    conn = await _connect(database_url)
    try:
        # The table name comes from _REGISTERED_IN, never from the command line.
        found = await conn.fetch(f"SELECT id FROM {table} WHERE id = any($1::text[])", list(idents))
    finally:
        await conn.close()
    known = {r["id"] for r in found}
    return [ident for ident in idents if ident not in known]


def cmd_credentials(args: argparse.Namespace, settings: Settings) -> None:
    role: Role = args.role
    what = f"emergency {args.command} credentials"
    usernames(role, args.ids, what)  # refuse a bad id before touching anything
    table = _REGISTERED_IN.get(role)
    if table is not None:
        missing = asyncio.run(_unregistered(settings, table, args.ids))
        if missing:
            raise SystemExit(f"{what}: not registered: {', '.join(missing)}")
    issue(settings, role, args.ids, what)


def _broker_or_exit(settings: Settings, what: str) -> EmbeddedMosquitto:
    broker = _private_broker(settings)
    if broker is None:
        raise SystemExit(f"{what}: EMERGENCY_MQTT_URL names an external broker; manage its accounts there")
    return broker


def cmd_mqtt_accounts(args: argparse.Namespace, settings: Settings) -> None:
    broker = _broker_or_exit(settings, "emergency mqtt accounts")
    try:
        accounts = broker.accounts()
    except ServiceError as exc:
        raise SystemExit(f"emergency mqtt accounts: {exc}") from None
    for account in accounts:
        print(f"{account.username:<40} {account.role}")


def cmd_mqtt_revoke(args: argparse.Namespace, settings: Settings) -> None:
    broker = _broker_or_exit(settings, "emergency mqtt revoke")
    try:
        removed = broker.remove_accounts(args.usernames)
    except ServiceError as exc:
        raise SystemExit(f"emergency mqtt revoke: {exc}") from None
    for name in args.usernames:
        print(f"{name}: {'revoked' if name in removed else 'no such account'}")
    if len(removed) < len(args.usernames):
        raise SystemExit(1)


def add_broker_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    sensors: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the commands above (``sensors`` is the existing ``emergency sensors`` group)."""
    creds = sensors.add_parser("credentials", help="a new MQTT password for registered sensors")
    creds.add_argument("ids", nargs="+", metavar="ID")
    creds.set_defaults(func=cmd_credentials, role=Role.SENSOR)

    units = subparsers.add_parser("units", help="field units' MQTT logins").add_subparsers(
        dest="units_command", required=True
    )
    ucreds = units.add_parser("credentials", help="a new MQTT password for units (first or rotation)")
    ucreds.add_argument("ids", nargs="+", metavar="ID")
    ucreds.set_defaults(func=cmd_credentials, role=Role.UNIT)

    cap = subparsers.add_parser("cap", help="CAP feeds' MQTT logins").add_subparsers(
        dest="cap_command", required=True
    )
    ccreds = cap.add_parser("credentials", help="a new MQTT password for CAP feeds publishing to cap/SOURCE")
    ccreds.add_argument("ids", nargs="+", metavar="SOURCE")
    ccreds.set_defaults(func=cmd_credentials, role=Role.CAP_FEED)

    mqtt = subparsers.add_parser("mqtt", help="the private broker's accounts").add_subparsers(
        dest="mqtt_command", required=True
    )
    mqtt.add_parser("accounts", help="list accounts and their roles").set_defaults(func=cmd_mqtt_accounts)
    revoke = mqtt.add_parser("revoke", help="delete accounts; their clients are disconnected")
    revoke.add_argument("usernames", nargs="+", metavar="USERNAME", help="e.g. sensors/S-1")
    revoke.set_defaults(func=cmd_mqtt_revoke)
