"""Private PostgreSQL and Mosquitto instances under the data folder.

``emergency up`` and the test fixtures both use this module, so what the tests
run against is what the demo runs against. The calls are blocking (they run
``initdb``, ``pg_ctl`` and wait for ports) and are made before the event loop
starts or from synchronous fixtures, never from a coroutine.

Both servers listen on loopback only. PostgreSQL refuses to run as root, so
when we are root the cluster is owned by and run as the ``postgres`` account
the Debian package creates; Mosquitto drops to its ``mosquitto`` account by
itself, so its folder is handed to that account.

Both run in sessions of their own (a Ctrl-C must reach the server first), so
they outlive an ``emergency up`` that is SIGKILLed. Each start therefore
looks for a leftover instance of *its own* folder (``postmaster.pid``, the
broker's pid file; the process must be alive and be that program for that
folder) and stops it cleanly before starting, unless the process that
started it is still alive: then the folder is in use and the start fails.
Stopping rather than adopting the leftover is deliberate: it may have been
started with other options (another port, a test cluster without fsync), and
an instance we started ourselves is one we know how to stop; a clean stop
checkpoints PostgreSQL and saves Mosquitto's persistence, so nothing is lost
and it costs a second or two.

The broker authenticates every client (``allow_anonymous false``): accounts
and their topics are in ``command/broker_accounts.py``; their registry, the
password file and the ACL live in the broker's folder, and adding an account
makes a running broker re-read them (SIGHUP).
"""

from __future__ import annotations

import contextlib
import fcntl
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from command.broker_accounts import (
    SALT_BYTES,
    SERVER_USERNAME,
    SERVICE_NAME_RE,
    SIMULATOR_USERNAME,
    Account,
    Role,
    acl_file,
    check_password,
    hash_password,
    parse_registry,
    password_file,
    registry_text,
)

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


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when it is not running.

    With the pid it names one process for good: a pid is reused, the pair is not.
    A zombie (exited, not yet reaped: an orphan's new parent may be slow to
    reap it) counts as not running.
    """
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat_line.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # field 3, the state
        return None
    return int(fields[19])  # field 22 of proc(5), the 20th after the name


def _record_owner(directory: Path) -> None:
    """Note that this process started the service in ``directory``."""
    pid = os.getpid()
    (directory / "owner").write_text(f"{pid} {_start_time(pid)}\n")


def _live_owner(directory: Path) -> int | None:
    """The pid of another process that started the service in ``directory`` and is still alive."""
    try:
        pid_text, started = (directory / "owner").read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or str(_start_time(pid)) != started:
        return None
    return pid


def _take_over(directory: Path, service: str, pid: int) -> None:
    """Refuse a folder another live process runs ``service`` in; otherwise announce the clean-up.

    Raises:
        ServiceError: the process that started the instance ``pid`` is alive.
    """
    owner = _live_owner(directory)
    if owner is not None:
        raise ServiceError(
            f"{service} in {directory} (pid {pid}) belongs to process {owner}, which is still running "
            f"(another `emergency up`?); stop that one first"
        )
    log.warning(
        "%s (pid %d) in %s was left running by a run that ended without cleaning up; stopping it",
        service,
        pid,
        directory,
    )


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    start = _start_time(pid)
    while start is not None and _start_time(pid) == start:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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
        # Before choosing the port: a leftover holds the recorded one.
        leftover = self._leftover_pid()
        if leftover is not None:
            _take_over(self.directory, "PostgreSQL", leftover)
            self._run(self._bindir / "pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "-t", "60", "stop")
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
        _record_owner(self.directory)
        self._ensure_database()
        log.info("PostgreSQL %s running on 127.0.0.1:%d", self.datadir, self.port)
        return self.url

    def _leftover_pid(self) -> int | None:
        """The postmaster running on our data folder, if one is (whoever started it).

        ``postmaster.pid`` alone is not proof: after a crash it names a dead
        process, or one that reused the pid. The process must be a
        ``postgres`` whose working directory (the postmaster chdirs there)
        is our data folder.
        """
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
            exe = Path(os.readlink(f"/proc/{pid}/exe")).name
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except (OSError, ValueError):
            return None
        if exe.startswith("postgres") and cwd.resolve() == self.datadir.resolve():
            return pid
        return None

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
        else:
            (self.directory / "owner").unlink(missing_ok=True)
        self._started = False


def _mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceError("mosquitto not found; run `make install`")


def mosquitto_config(port: int, directory: Path, *, save_every_change: bool = True) -> str:
    """The generated broker configuration (pure: returns text).

    Every client logs in (``allow_anonymous false``) with an account of the
    password file and may use only the topics the ACL grants it; both files
    are generated from the account registry (``EmbeddedMosquitto.set_password``).

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
            "allow_anonymous false",
            f"password_file {directory}/passwd",
            f"acl_file {directory}/acl",
            # Written by the broker itself: how a later run finds a leftover
            # broker, and how `emergency sensors add` finds the one to reload.
            f"pid_file {directory}/mosquitto.pid",
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


def _new_password() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits


def _write_private(path: Path, text: str, account: _Account | None) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600, owned by ``account`` (when root).

    Atomic, so a broker re-reading its password file or ACL never sees half of one.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if account is not None:
        os.chown(tmp, account.uid, account.gid)
    os.replace(tmp, path)


def _login_accepted(port: int, username: str, password: str, timeout: float) -> bool:
    """Whether the broker on ``port`` accepts ``username``/``password`` (it leaves no session)."""
    replies: list[ReasonCode] = []
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"emergency-check-{secrets.token_hex(4)}", protocol=paho.MQTTv5
    )
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: replies.append(reason)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    while not replies and time.monotonic() < deadline:
        if client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
            break  # refused: the broker closed the connection
    accepted = bool(replies) and not replies[0].is_failure
    if accepted:
        client.disconnect()
        client.loop(timeout=0.05)  # sends the DISCONNECT and closes the socket
    return accepted


def embedded_mqtt_url(directory: Path) -> str | None:
    """The server's URL for the private broker in ``directory``, if one was ever started there.

    It carries the server account's password: do not log it.
    """
    try:
        port = int((directory / "port").read_text())
        password = (directory / SERVER_SECRET).read_text().strip()
    except (OSError, ValueError):
        return None
    return _url(SERVER_USERNAME, password, port)


def _url(username: str, password: str, port: int) -> str:
    # Service names and generated passwords are URL-safe as they are; quote()
    # is a guard, not an encoding anyone needs to undo.
    return f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}"


# Where the service accounts' passwords are kept (mode 0600): the server and
# the other commands read them to log in; nothing else ever holds them.
SERVER_SECRET = "server.password"
SIMULATOR_SECRET = "simulator.password"


class EmbeddedMosquitto:
    """A Mosquitto broker with its config, accounts, persistence and log in ``directory``.

    ``url`` logs in as the server account (``emergency-server``), whose
    random password is made at the first start and kept in
    ``directory/server.password`` (0600).
    """

    def __init__(self, directory: Path, *, save_every_change: bool = True) -> None:
        self.directory = directory.resolve()
        self.save_every_change = save_every_change
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._account = _service_account("mosquitto")
        self._server_password: str | None = None

    @property
    def url(self) -> str:
        """The server account's URL (it carries the password: do not log it)."""
        if self._server_password is None:
            raise ServiceError("the broker has not been started")
        return _url(SERVER_USERNAME, self._server_password, self.port)

    def url_for(self, username: str, password: str) -> str:
        """The URL that logs in to this broker as the service account ``username``.

        Raises:
            ValueError: ``username`` is not a service account's (a device's
                ``sensors/S-1`` logs in with its own issued login).
        """
        if not SERVICE_NAME_RE.match(username):
            raise ValueError(f"{username!r} is not a service account name")
        return _url(username, password, self.port or self._recorded_port())

    @property
    def _conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    def start(self, port: int | None = None) -> str:
        """Write the config and the account files, and start the broker. Returns the server's URL.

        Args:
            port: listen here (a restart in tests keeps the port); default a
                recorded or free one.
        Raises:
            ServiceError: the broker did not start, or its folder is in use by
                another live process.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        _check_reachable(self.directory.parent, self._account)
        leftover = self._running_pid()
        if leftover is not None:
            _take_over(self.directory, "Mosquitto", leftover)
            self._terminate(leftover)
        with self._accounts() as accounts:
            self._server_password = self._service_password(
                accounts, Role.SERVER, SERVER_USERNAME, self.directory / SERVER_SECRET
            )
        self.port = port or _stable_port(self.directory / "port")
        self._conf.write_text(
            mosquitto_config(self.port, self.directory, save_every_change=self.save_every_change)
        )
        _chown_tree(self.directory, self._account)
        # Own session: a Ctrl-C aimed at us must not reach the broker before
        # the server has left its MQTT session cleanly.
        self._proc = subprocess.Popen(
            [_mosquitto_binary(), "-c", str(self._conf)],
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
        _record_owner(self.directory)
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
        (self.directory / "owner").unlink(missing_ok=True)

    # -- accounts ------------------------------------------------------------------

    def set_password(self, role: Role, username: str) -> str:
        """Create the account ``username``, or give it a new password (rotation). Returns the password.

        See :meth:`set_passwords`.
        """
        return self.set_passwords(role, [username])[username]

    def set_passwords(self, role: Role, usernames: Sequence[str]) -> dict[str, str]:
        """Create accounts, or give existing ones new passwords. Returns username -> password.

        The passwords exist only in the return value: the registry keeps their
        hashes. A running broker (ours, or one another process started in this
        folder) re-reads its files once, and the call returns when it accepts
        the new passwords; the reload also disconnects a client still logged
        in with an old one. A stopped broker reads them at its next start.

        Raises:
            ValueError: a username does not fit ``role`` (broker_accounts.grants_for).
            ServiceError: the running broker did not accept a new password.
        """
        passwords = {username: _new_password() for username in usernames}
        fresh = [
            Account(username, role, hash_password(password, secrets.token_bytes(SALT_BYTES)))
            for username, password in passwords.items()
        ]
        with self._accounts() as accounts:
            accounts.update((account.username, account) for account in fresh)
        self._reload(check=passwords)
        return passwords

    def service_password(self, role: Role, username: str, secret_name: str) -> str:
        """The password of a service account kept in ``directory/secret_name``; made on first use.

        For the demo simulator (``emergency-simulator``), which ``emergency up``
        and ``emergency simulate`` log in as.
        """
        with self._accounts() as accounts:
            before = accounts.get(username)
            password = self._service_password(accounts, role, username, self.directory / secret_name)
            changed = accounts.get(username) != before
        if changed:
            self._reload(check={username: password})
        return password

    def simulator_url(self) -> str:
        """The demo simulator's URL (its account is made on first use)."""
        password = self.service_password(Role.SIMULATOR, SIMULATOR_USERNAME, SIMULATOR_SECRET)
        return self.url_for(SIMULATOR_USERNAME, password)

    def remove_accounts(self, usernames: Iterable[str]) -> list[str]:
        """Delete accounts (a lost device). Returns the names that existed.

        A running broker re-reads its files and disconnects their clients.
        """
        with self._accounts() as accounts:
            removed = [name for name in usernames if accounts.pop(name, None) is not None]
        if removed:
            self._reload()
        return removed

    def accounts(self) -> list[Account]:
        """Every account, by username."""
        with self._accounts() as accounts:
            return sorted(accounts.values(), key=lambda a: a.username)

    @contextlib.contextmanager
    def _accounts(self) -> Iterator[dict[str, Account]]:
        """The registry, locked against other processes; written back (with both files) at exit.

        `emergency up` and `emergency sensors add` may run at the same time.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        registry = self.directory / "accounts.json"
        with open(self.directory / "accounts.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                accounts = parse_registry(registry.read_text())
            except FileNotFoundError:
                accounts = {}
            except ValueError as exc:
                raise ServiceError(f"{registry}: {exc}") from None
            yield accounts
            # The registry first: the other two are generated from it at every start.
            _write_private(registry, registry_text(accounts.values()), self._account)
            _write_private(self.directory / "passwd", password_file(accounts.values()), self._account)
            _write_private(self.directory / "acl", acl_file(accounts.values()), self._account)

    def _service_password(self, accounts: dict[str, Account], role: Role, username: str, secret: Path) -> str:
        with contextlib.suppress(OSError):
            password = secret.read_text().strip()
            known = accounts.get(username)
            if known is not None and known.role is role and check_password(password, known.password_hash):
                return password
        password = _new_password()
        accounts[username] = Account(username, role, hash_password(password, secrets.token_bytes(SALT_BYTES)))
        _write_private(secret, password + "\n", self._account)
        return password

    def _recorded_port(self) -> int:
        try:
            return int((self.directory / "port").read_text())
        except (OSError, ValueError):
            raise ServiceError(f"no broker was ever started in {self.directory}") from None

    def _running_pid(self) -> int | None:
        """The broker running on our config, whoever started it, or None.

        The pid file alone is not proof (a SIGKILLed broker leaves it, and
        pids are reused): the process must be mosquitto run with our config.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int((self.directory / "mosquitto.pid").read_text())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = [b"-c", os.fsencode(self._conf)]
        if len(argv) >= 3 and Path(os.fsdecode(argv[0])).name == "mosquitto" and argv[1:3] == ours:
            return pid
        return None

    def _terminate(self, pid: int) -> None:
        """Stop a leftover broker: SIGTERM (it saves its persistence), SIGKILL after 10 s."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not _wait_gone(pid, 5):
                raise ServiceError(f"the leftover Mosquitto (pid {pid}) in {self.directory} does not stop")

    def _reload(self, check: dict[str, str] | None = None) -> None:
        """Make a running broker re-read its password file and ACL (SIGHUP; Mosquitto 2.0 does).

        Args:
            check: usernames and passwords to wait for until the broker accepts them.
        Raises:
            ServiceError: the broker did not accept one of ``check`` within 10 s.
        """
        pid = self._running_pid()
        if pid is None:
            return  # read at the next start
        os.kill(pid, signal.SIGHUP)
        port = self.port or self._recorded_port()
        deadline = time.monotonic() + 10
        for username, password in (check or {}).items():
            while not _login_accepted(port, username, password, timeout=2):
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"the broker did not accept account {username} after reloading; "
                        f"see {self.directory / 'mosquitto.log'}"
                    )
                time.sleep(0.1)
