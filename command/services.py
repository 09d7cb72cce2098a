"""Private PostgreSQL and Mosquitto instances under the data folder.

``emergency up`` and the test fixtures both use this module, so what the tests
run against is what the demo runs against. The calls are blocking (they run
``initdb``, ``pg_ctl`` and wait for ports) and are made before the event loop
starts or from synchronous fixtures, never from a coroutine.

Both servers listen on loopback only. PostgreSQL refuses to run as root, so
when we are root the cluster is owned by and run as the ``postgres`` account
the Debian package creates; Mosquitto drops to its ``mosquitto`` account by
itself, so its folder is handed to that account.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

PG_USER = "emergency"
PG_DATABASE = "emergency"


class ServiceError(RuntimeError):
    """An embedded service could not be set up or started; the message says why."""


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers themselves bind: connections of the previous run
        # lingering in TIME_WAIT must not make us move to another port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with status {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _stable_port(path: Path) -> int:
    """Reuse the port recorded in ``path`` when it is free, so the demo's URLs stay put."""
    with contextlib.suppress(OSError, ValueError):
        port = int(path.read_text().strip())
        if _port_is_free(port):
            return port
    port = free_port()
    path.write_text(f"{port}\n")
    return port


@dataclass(frozen=True, slots=True)
class _Account:
    name: str
    uid: int
    gid: int


def _service_account(name: str) -> _Account | None:
    """The account to run a service as: ``name`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServiceError(
            f"running as root needs the '{name}' account to run the service "
            f"(it comes with the Debian package); create it or run as another user"
        ) from None
    return _Account(name, entry.pw_uid, entry.pw_gid)


def _check_reachable(path: Path, account: _Account | None) -> None:
    """Fail clearly when the service account cannot enter a folder above ``path``.

    The usual case: a checkout under /root (mode 0700) run as root. The
    server would otherwise die with a bare "permission denied" from initdb.
    """
    if account is None:
        return
    for folder in [path, *path.parents]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == account.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == account.gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise ServiceError(
                f"the '{account.name}' account, which runs the service, cannot enter {folder}; "
                f"set EMERGENCY_DATA_DIR to a folder it can reach (e.g. /var/lib/emergency), "
                f"or allow it in with: chmod o+x {folder}"
            )


def _chown_tree(path: Path, account: _Account | None) -> None:
    if account is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.uid, account.gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.uid, account.gid, follow_symlinks=False)


def _pg_bindir() -> Path:
    configured = os.environ.get("EMERGENCY_PG_BINDIR")
    if configured:
        return Path(configured)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServiceError("PostgreSQL server binaries (initdb) not found; run `make install`")


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``directory``, created on first start, kept across restarts.

    Args:
        directory: where the cluster lives (created if missing).
        durable: False turns off fsync, for throwaway test clusters only.
    """

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory.resolve()
        self.datadir = self.directory / "data"
        self.durable = durable
        self.port = 0
        self._account = _service_account("postgres")
        self._bindir = _pg_bindir()
        self._started = False

    @property
    def password(self) -> str:
        return (self.directory / "password").read_text().strip()

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _run(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        kwargs: dict[str, object] = {}
        if self._account is not None:
            kwargs = {"user": self._account.uid, "group": self._account.gid, "extra_groups": []}
        proc = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd="/",  # the service account may not be able to read our cwd
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"{Path(str(args[0])).name} failed: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return str(proc.stdout)

    def start(self) -> str:
        """Create the cluster if needed, start it, make sure the database exists.

        Returns:
            the connection URL (it carries the generated password: do not log it).
        Raises:
            ServiceError: a step failed; the message carries the tool's own words.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        _check_reachable(self.directory.parent, self._account)
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()
        _chown_tree(self.directory, self._account)
        self.port = _stable_port(self.directory / "port")
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.directory}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            self._bindir / "pg_ctl",
            "-D",
            self.datadir,
            "-l",
            self.directory / "postgres.log",
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(options),
            "start",
        )
        self._started = True
        self._ensure_database()
        log.info("PostgreSQL %s running on 127.0.0.1:%d", self.datadir, self.port)
        return self.url

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        pwfile = self.directory / "password"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        _chown_tree(self.directory, self._account)
        self._run(
            self._bindir / "initdb",
            "-D",
            self.datadir,
            "-U",
            PG_USER,
            "--pwfile",
            pwfile,
            "--auth",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale",
            "C",
        )

    def _ensure_database(self) -> None:
        env = {"PGPASSWORD": self.password}
        common = ("-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER)
        exists = self._run(
            self._bindir / "psql",
            *common,
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'",
            env=env,
        )
        if exists.strip() != "1":
            self._run(self._bindir / "createdb", *common, PG_DATABASE, env=env)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create another database in this cluster (tests use one per test). Returns its URL."""
        env = {"PGPASSWORD": self.password}
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        if template:
            args += ["-T", template]
        self._run(self._bindir / "createdb", *args, name, env=env)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def crash(self) -> None:
        """Immediate shutdown, as a crash: no checkpoint, recovery from WAL at the next start."""
        self._run(self._bindir / "pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Fast shutdown: roll back open transactions, checkpoint, exit."""
        if not self._started:
            return
        try:
            self._run(self._bindir / "pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "-t", "60", "stop")
        except ServiceError as exc:
            log.warning("stopping PostgreSQL: %s", exc)
        self._started = False


def _mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceError("mosquitto not found; run `make install`")


def mosquitto_config(port: int, directory: Path, *, save_every_change: bool = True) -> str:
    """The generated broker configuration (pure: returns text).

    By default persistence is saved on every change, so even a broker crash
    loses no QoS 1 message it has acknowledged to a sensor. Mosquitto saves
    its whole database each time, which caps throughput (measured: ~600
    messages/s here, against ~4,600/s when saving once a second; see
    docs/operations.md). ``save_every_change=False`` saves once a second
    instead: a clean shutdown still saves everything; a crash may lose up to
    a second of queued messages. The queue limit is raised so a long database
    outage does not make the broker drop our backlog.
    """
    return "\n".join(
        [
            "# Generated by `emergency up`; edits are overwritten at the next start.",
            "per_listener_settings false",
            f"listener {port} 127.0.0.1",
            # Loopback only. Issue #8 replaces this with a password file and ACL.
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {directory}/",
            "persistence_file mosquitto.db",
            f"autosave_on_changes {'true' if save_every_change else 'false'}",
            "autosave_interval 1",
            "max_queued_messages 200000",
            "max_inflight_messages 1000",
            "set_tcp_nodelay true",
            "persistent_client_expiration 14d",
            f"log_dest file {directory}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            "",
        ]
    )


class EmbeddedMosquitto:
    """A Mosquitto broker with its config, persistence and log in ``directory``."""

    def __init__(self, directory: Path, *, save_every_change: bool = True) -> None:
        self.directory = directory.resolve()
        self.save_every_change = save_every_change
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._account = _service_account("mosquitto")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> str:
        """Write the config and start the broker. Returns its URL.

        Args:
            port: listen here (a restart in tests keeps the port); default a
                recorded or free one.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        _check_reachable(self.directory.parent, self._account)
        self.port = port or _stable_port(self.directory / "port")
        conf = self.directory / "mosquitto.conf"
        conf.write_text(mosquitto_config(self.port, self.directory, save_every_change=self.save_every_change))
        _chown_tree(self.directory, self._account)
        # Own session: a Ctrl-C aimed at us must not reach the broker before
        # the server has left its MQTT session cleanly.
        self._proc = subprocess.Popen(
            [_mosquitto_binary(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_for_port(self.port, 20, self._proc)
        except ServiceError as exc:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            self.stop()
            raise ServiceError(f"mosquitto: {exc}: {err.strip()}") from None
        log.info("Mosquitto running on 127.0.0.1:%d", self.port)
        return self.url

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL when ``kill``) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
