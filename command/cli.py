"""The ``emergency`` command line.

    emergency up          everything: embedded services (unless URLs are set),
                          migrations, the demo city, the server and a simulator
    emergency serve       the server alone, against configured URLs
    emergency migrate     apply migrations
    emergency seed-demo   load the synthetic demo city
    emergency simulate    publish simulated alarms and unit movements
    emergency users add   create an account
    emergency sensors add register a sensor and issue its MQTT login
    emergency sensors|units|cap credentials ID...  new MQTT logins (rotation)
    emergency mqtt accounts|revoke               the private broker's accounts
    emergency import KIND FILE   load units, depots, stock, hazards, sites, districts,
                          sensors (CSV or GeoJSON) or roads (.osm, .osm.pbf)
    emergency export KIND FILE   write them back out
    emergency drain-session NAME store what the broker kept for a retired
                          instance, then end its MQTT session

Settings come from the environment (see command/settings.py). Commands other
than ``up`` use the configured URLs, or the private instances ``up`` started
in the data folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
from aiohttp import web
from shapely.geometry import Point

from command import accounts, audit, db, db_roles
from command.access_log import AccessLogger
from command.app import create_app
from command.broker_accounts import Role
from command.broker_cli import add_broker_commands, issue, usernames
from command.import_cli import add_import_commands
from command.migrations import MigrationError, migrate
from command.services import (
    PG_DATABASE,
    PG_USER,
    EmbeddedMosquitto,
    EmbeddedPostgres,
    ServiceError,
    embedded_mqtt_url,
)
from command.settings import MqttTarget, Settings, load

log = logging.getLogger("emergency")

DEMO_ROLES = ("admin", "commander", "dispatcher", "viewer", "field")


def _embedded_urls(settings: Settings) -> tuple[str | None, str | None]:
    """URLs of the private instances ``emergency up`` keeps in the data folder, if any."""
    pg_dir, mq_dir = settings.data_dir / "pg", settings.data_dir / "mosquitto"
    database = mqtt = None
    with contextlib.suppress(OSError, ValueError):
        port = int((pg_dir / "port").read_text())
        password = (pg_dir / "password").read_text().strip()
        database = f"postgresql://{PG_USER}:{quote(password, safe='')}@127.0.0.1:{port}/{PG_DATABASE}"
    # The broker wants a login: the server account's, kept beside its port.
    mqtt = embedded_mqtt_url(mq_dir)
    return database, mqtt


def _resolved(settings: Settings) -> Settings:
    database, mqtt = _embedded_urls(settings)
    database = settings.database_url or database
    mqtt = settings.mqtt_url or mqtt
    if database is None or mqtt is None:
        raise SystemExit(
            "no database/broker: set EMERGENCY_DATABASE_URL and EMERGENCY_MQTT_URL, or run `emergency up`"
        )
    return settings.with_urls(database, mqtt)


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await db.register_codecs(conn)
    return conn


async def _migrate(url: str, server_url: str | None = None) -> None:
    """Migrate as the owner (``url``); then grant the server's role
    (``server_url``'s user, when another) its privileges (command/db_roles.py)."""
    conn = await asyncpg.connect(url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    for name in applied:
        log.info("applied migration %s", name)
    if not applied:
        log.info("database schema is up to date")
    await db_roles.grant_after_migrate(url, server_url)


def _owner_url(settings: Settings) -> str:
    """Who migrates: EMERGENCY_MIGRATE_DATABASE_URL, else the direct URL."""
    url = settings.migrate_database_url or settings.direct_url
    assert url is not None
    return url


async def _as_app_role(settings: Settings, owner_url: str) -> Settings:
    """For the embedded cluster: the server connects as its own DML-only role,
    not as the cluster's owner; the owner's URL stays for HTTP road imports."""
    app_url = await db_roles.ensure_embedded_app_role(owner_url, settings.data_dir / "pg")
    return replace(settings, database_url=app_url, direct_database_url=None, migrate_database_url=owner_url)


def _read_logins(path: Path) -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError):
        logins = json.loads(path.read_text())
        if isinstance(logins, dict):
            return {str(k): str(v) for k, v in logins.items()}
    return {}


def _write_logins(path: Path, logins: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the passwords are never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(logins, f, indent=2)


async def _seed_demo(url: str, data_dir: Path) -> dict[str, str]:
    """Load the demo city and its accounts.

    Returns:
        username -> password of the demo accounts: new ones are created with
        random passwords; those of earlier runs are read back from the data folder.
    """
    from command.demo_city import build_city
    from command.seed import seed_demo

    logins_file = data_dir / "demo-logins.json"
    logins = await asyncio.to_thread(_read_logins, logins_file)
    conn = await _connect(url)
    try:
        counts = await seed_demo(conn, build_city())
        if any(counts.values()):
            log.info("demo city loaded: %s", ", ".join(f"{v} {k}" for k, v in counts.items()))
        field_unit = await conn.fetchval("SELECT id FROM units ORDER BY id LIMIT 1")
        for role in DEMO_ROLES:
            if await conn.fetchval("SELECT 1 FROM users WHERE username = $1", role):
                continue
            password = secrets.token_urlsafe(9)
            await accounts.add_user(
                conn,
                username=role,
                password=password,
                role=role,
                unit_id=field_unit if role == "field" else None,
                demo=True,
            )
            logins[role] = password
    finally:
        await conn.close()
    await asyncio.to_thread(_write_logins, logins_file, logins)
    return logins


async def _serve(
    settings: Settings,
    *,
    simulate_rate: float | None = None,
    simulator_mqtt: MqttTarget | None = None,
    banner: str = "",
) -> None:
    """Run the server (and optionally the simulator) until cancelled, then shut down gracefully.

    The simulator logs in as ``simulator_mqtt`` (default: the server's own login).
    """
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    log.info("serving on http://%s:%d/", settings.http_host, settings.http_port)
    if banner:
        print(banner, flush=True)
    try:
        async with asyncio.TaskGroup() as group:
            if simulate_rate:
                from command.simulator import run_simulator

                target = simulator_mqtt or settings.mqtt
                assert settings.database_url is not None
                group.create_task(
                    run_simulator(
                        settings.database_url,
                        target.host,
                        target.port,
                        simulate_rate,
                        mqtt_username=target.username,
                        mqtt_password=target.password,
                    ),
                    name="simulator",
                )
            group.create_task(asyncio.Event().wait(), name="serve-forever")
    finally:
        await runner.cleanup()


def _run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run with SIGTERM and SIGHUP treated like Ctrl-C: cancel, then clean up.

    SIGHUP is what a closed terminal sends: without it the private services,
    in sessions of their own, would outlive us.
    """

    async def wrapper() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await main

    asyncio.run(wrapper())


def cmd_up(args: argparse.Namespace, settings: Settings) -> None:
    started: list[EmbeddedPostgres | EmbeddedMosquitto] = []
    # Until _run installs its own handlers, SIGTERM and SIGHUP (a closed
    # terminal) interrupt like Ctrl-C, so the finally below stops what started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        database_url, mqtt_url = settings.database_url, settings.mqtt_url
        embedded_database = database_url is None
        simulator_mqtt = None
        if database_url is None:
            pg = EmbeddedPostgres(settings.data_dir / "pg")
            database_url = pg.start()
            started.append(pg)
        if mqtt_url is None:
            broker = EmbeddedMosquitto(settings.data_dir / "mosquitto")
            mqtt_url = broker.start()
            started.append(broker)
            if args.simulate:
                # The simulator plays every sensor and unit: an account of its
                # own allowed just that, since the server's may not publish there.
                simulator_mqtt = MqttTarget.from_url(broker.simulator_url())
        settings = settings.with_urls(database_url, mqtt_url)

        async def main() -> None:
            serving = settings
            if embedded_database:
                await _migrate(database_url)
                serving = await _as_app_role(settings, database_url)
            else:
                await _migrate(_owner_url(settings), database_url if settings.migrate_database_url else None)
            logins = await _seed_demo(_owner_url(settings), settings.data_dir) if args.demo else {}
            lines = [
                "",
                f"  Console:  http://{settings.http_host}:{settings.http_port}/",
                f"  Broker:   {settings.mqtt.url()}",
            ]
            if logins:
                lines.append("  Demo logins (also in " + str(settings.data_dir / "demo-logins.json") + "):")
                lines += [f"    {user:<11} {password}" for user, password in logins.items()]
            lines.append("  Ctrl-C stops everything.\n")
            await _serve(
                serving,
                simulate_rate=args.rate if args.simulate else None,
                simulator_mqtt=simulator_mqtt,
                banner="\n".join(lines),
            )

        _run(main())
    except (ServiceError, MigrationError) as exc:
        raise SystemExit(f"emergency up: {exc}") from None
    finally:
        for service in reversed(started):
            service.stop()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    embedded_database = settings.database_url is None
    settings = _resolved(settings)

    async def main() -> None:
        # Migrations hold a session advisory lock (one instance migrates at a
        # time): a session of their own, like the feed's LISTEN.
        owner = _owner_url(settings)
        serving = settings
        if embedded_database:
            await _migrate(owner)
            serving = await _as_app_role(settings, owner)
        else:
            await _migrate(owner, settings.database_url if settings.migrate_database_url else None)
        await _serve(serving)

    _run(main())


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    embedded_database = settings.database_url is None
    settings = _resolved(settings)

    async def main() -> None:
        owner = _owner_url(settings)
        if embedded_database:
            await _migrate(owner)
            await _as_app_role(settings, owner)
        else:
            await _migrate(owner, settings.database_url if settings.migrate_database_url else None)

    try:
        asyncio.run(main())
    except MigrationError as exc:
        raise SystemExit(f"emergency migrate: {exc}") from None


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> None:
    settings = _resolved(settings)
    assert settings.database_url is not None
    logins = asyncio.run(_seed_demo(settings.database_url, settings.data_dir))
    for user, password in logins.items():
        print(f"{user:<11} {password}")


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> None:
    from command.simulator import run_simulator

    private_broker = settings.mqtt_url is None
    settings = _resolved(settings)
    target = settings.mqtt
    if private_broker:
        # The private broker gives the simulator an account of its own; with an
        # external one, EMERGENCY_MQTT_URL must carry a login allowed to
        # publish as the sensors and units (docs/operations.md).
        try:
            target = MqttTarget.from_url(EmbeddedMosquitto(settings.data_dir / "mosquitto").simulator_url())
        except ServiceError as exc:
            raise SystemExit(f"emergency simulate: {exc}") from None
    assert settings.database_url is not None
    _run(
        run_simulator(
            settings.database_url,
            target.host,
            target.port,
            args.rate,
            mqtt_username=target.username,
            mqtt_password=target.password,
        )
    )


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> None:
    settings = _resolved(settings)
    password = args.password
    if password is None:
        password = os.environ.get("EMERGENCY_NEW_PASSWORD")
    if password is None:
        import getpass

        password = getpass.getpass(f"password for {args.username}: ")

    async def main() -> int:
        assert settings.database_url is not None
        conn = await _connect(settings.database_url)
        try:
            async with conn.transaction():
                user_id = await accounts.add_user(
                    conn,
                    username=args.username,
                    password=password,
                    role=args.role,
                    unit_id=args.unit,
                    districts=args.district or None,
                )
                # The command line has no session: the operating-system user
                # who ran it is the actor, and the address is this machine.
                await audit.record(
                    conn,
                    action="cli.user_create",
                    outcome="ok",
                    actor=audit.cli_actor(),
                    role=None,
                    address="local",
                    target=f"user:{user_id}",
                    detail={"username": args.username, "role": args.role, "unit_id": args.unit},
                )
                return user_id
        finally:
            await conn.close()

    try:
        user_id = asyncio.run(main())
    except accounts.AccountError as exc:
        raise SystemExit(f"emergency users add: {exc}") from None
    print(f"user {args.username} ({args.role}) created with id {user_id}")


def cmd_drain_session(args: argparse.Namespace, settings: Settings) -> None:
    from command.drain import DrainError, drain_session

    settings = _resolved(settings)
    if args.share_group is not None:
        try:
            settings = replace(settings, mqtt_share_group=args.share_group)
        except ValueError as exc:
            raise SystemExit(f"emergency drain-session: {exc}") from None
    try:
        report = asyncio.run(drain_session(settings, args.name, idle_timeout=args.idle_timeout))
    except ValueError as exc:
        raise SystemExit(f"emergency drain-session: {exc}") from None
    except DrainError as exc:
        raise SystemExit(f"emergency drain-session: {exc}; the session is kept: run again") from None
    if not report.session_present:
        print(f"the broker held no session {report.client_id} (wrong name, or drained already); done")
        return
    print(
        f"session {report.client_id}: {report.messages} messages stored ({report.alarms_stored} new alarms,"
        f" {report.alarms_duplicate} already stored, {report.dead_letters} dead letters); session ended"
    )


def cmd_sensors_add(args: argparse.Namespace, settings: Settings) -> None:
    configured, settings = settings, _resolved(settings)
    if (args.lat is None) != (args.lon is None):
        raise SystemExit("emergency sensors add: give both --lat and --lon, or neither")
    # Refuse an id that cannot have an MQTT login before registering it.
    usernames(Role.SENSOR, [args.id], "emergency sensors add")
    location = Point(args.lon, args.lat) if args.lat is not None else None

    async def main() -> None:
        assert settings.database_url is not None
        conn = await _connect(settings.database_url)
        try:
            await conn.execute(
                """
                INSERT INTO sensors (id, kind, name, location, district_id)
                VALUES ($1, $2, $3, $4,
                        (SELECT d.id FROM districts d WHERE ST_Intersects(d.geom, $4) LIMIT 1))
                """,
                args.id,
                args.kind,
                args.name,
                location,
            )
        finally:
            await conn.close()

    try:
        asyncio.run(main())
    except asyncpg.UniqueViolationError:
        raise SystemExit(f"emergency sensors add: sensor {args.id!r} already exists") from None
    except asyncpg.CheckViolationError:
        raise SystemExit("emergency sensors add: id must match [A-Za-z0-9_.:-]{1,64}") from None
    print(f"sensor {args.id} registered; it publishes to sensors/{args.id}/alarm")
    issue(configured, Role.SENSOR, [args.id], "emergency sensors add")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emergency", description="Emergency coordination command platform")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start everything (embedded services unless URLs are set)")
    up.add_argument("--no-demo", dest="demo", action="store_false", help="do not load the demo city")
    up.add_argument("--no-simulate", dest="simulate", action="store_false", help="do not run the simulator")
    up.add_argument("--rate", type=float, default=2.0, help="simulated alarms per second (default 2)")
    up.set_defaults(func=cmd_up)

    sub.add_parser("serve", help="run the server against configured URLs").set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("seed-demo", help="load the synthetic demo city").set_defaults(func=cmd_seed_demo)

    sim = sub.add_parser("simulate", help="publish simulated alarms and unit movements")
    sim.add_argument("--rate", type=float, default=2.0, help="alarms per second (default 2)")
    sim.set_defaults(func=cmd_simulate)

    users = sub.add_parser("users", help="manage accounts").add_subparsers(
        dest="users_command", required=True
    )
    add = users.add_parser("add", help="create an account")
    add.add_argument("--username", required=True)
    add.add_argument(
        "--password",
        help="the password (default: $EMERGENCY_NEW_PASSWORD, else asked for; "
        "a password on the command line is visible to other local users)",
    )
    add.add_argument("--role", required=True, choices=("admin", "commander", "dispatcher", "field", "viewer"))
    add.add_argument("--unit", help="the unit a field account belongs to")
    add.add_argument("--district", action="append", help="bind to a district (repeatable)")
    add.set_defaults(func=cmd_users_add)

    sensors = sub.add_parser("sensors", help="manage sensors").add_subparsers(
        dest="sensors_command", required=True
    )
    sadd = sensors.add_parser("add", help="register a sensor and issue its MQTT login")
    sadd.add_argument("--id", required=True)
    sadd.add_argument(
        "--kind", required=True, help="smoke, gas, water_level, seismic, structural, air_quality, ..."
    )
    sadd.add_argument("--name")
    sadd.add_argument("--lat", type=float)
    sadd.add_argument("--lon", type=float)
    sadd.set_defaults(func=cmd_sensors_add)
    add_broker_commands(sub, sensors)

    drain = sub.add_parser(
        "drain-session",
        help="retire an instance: store what the broker queued in its MQTT session, then end it",
        description="Connects once with the retired instance's MQTT client id, stores everything "
        "the broker kept for it (in flight when it died, and its share of what came since), "
        "and ends the session. Only for an instance that is stopped for good, while another "
        "instance serves. See docs/scaling.md.",
    )
    drain.add_argument("name", help="the retired instance's EMERGENCY_INSTANCE")
    drain.add_argument(
        "--share-group",
        help="the share group that instance used (default: $EMERGENCY_MQTT_SHARE_GROUP, else none)",
    )
    drain.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="give up when nothing arrives for this many seconds (default 30)",
    )
    drain.set_defaults(func=cmd_drain_session)
    add_import_commands(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load()
    except ValueError as exc:
        raise SystemExit(f"emergency: {exc}") from None
    args.func(args, settings)
