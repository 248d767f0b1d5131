"""The local stack: a real single-node KRaft Kafka, PostgreSQL and Redis, without Docker.

    python deploy/local/stack.py up | down | reset | status | logs
    python deploy/local/stack.py start | stop | restart kafka|postgres|redis

Each server keeps its data under `.stack/<name>/`, logs to `.stack/logs/<name>.log` and listens
on 127.0.0.1 at a port of its own (not the default one, so nothing already running collides).
`up` waits until each is really ready (Kafka answers a metadata request and has a group
coordinator, PostgreSQL a query, Redis PING), recovers stale pid files and half-started
processes, and writes the connection settings to `.stack/env`. Re-running it is harmless. A
server whose settings are already in the environment (for example
NEXWATT_KAFKA_BOOTSTRAP_SERVERS) is taken as external and not started.
`start`, `stop` and `restart` do the same for one server (the fault tests restart them under a
running service), on the same data. Stops are quick and bounded: PostgreSQL's fast mode, SIGTERM
for Kafka and Redis (which saves a snapshot then), SIGKILL for a process still there after 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / ".stack"
LOGS = STACK / "logs"
ENV_FILE = STACK / "env"
KAFKA_PORT, KAFKA_CONTROLLER_PORT, POSTGRES_PORT, REDIS_PORT = 19092, 19093, 15432, 16379
READY_TIMEOUT_S = 90.0


def _kafka_version() -> str:
    pom = (ROOT / "deploy/local/kafka/pom.xml").read_text()
    return pom.split("<kafka.version>")[1].split("</kafka.version>")[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_pid(pid: int, timeout_s: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _poll(check: Callable[[], Coroutine[Any, Any, None]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await asyncio.wait_for(check(), timeout=10)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@dataclass
class Server:
    """One server of the stack: how to start it, stop it and tell that it is ready."""

    name: str
    port: int
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return STACK / self.name

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.data / "server.pid"

    def pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        return pid if pid is not None and _pid_alive(pid) else None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            _stop_pid(pid)
        self.pidfile.unlink(missing_ok=True)

    async def ready(self) -> None:
        raise NotImplementedError

    def external(self) -> bool:
        """The environment names another server (a value that is not this stack's own)."""
        return all(os.environ.get(k) not in (None, "", v) for k, v in self.env.items())


class Kafka(Server):
    def __init__(self) -> None:
        super().__init__(
            "kafka", KAFKA_PORT, {"NEXWATT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}"}
        )
        self.libs = ROOT / ".cache" / f"kafka-{_kafka_version()}" / "libs"

    def _config(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{KAFKA_CONTROLLER_PORT}",
            "listeners": f"PLAINTEXT://127.0.0.1:{KAFKA_PORT},"
            f"CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{KAFKA_PORT}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data / "log"),
            "num.partitions": "1",
            # Our code creates every topic itself, from the registry in nexwatt_shared.topics.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        path = self.data / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.data / "log4j2.properties"
        log4j.write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=WARN\n"
            "logger.apache.name=org.apache.kafka\nlogger.apache.level=WARN\n"
            "logger.started.name=kafka.server.KafkaRaftServer\nlogger.started.level=INFO\n"
        )
        return path

    def start(self) -> None:
        if not (self.libs / ".complete").exists():
            raise SystemExit(f"Kafka jars missing in {self.libs}: run `make setup` first.")
        java = shutil.which("java")
        if java is None:
            raise SystemExit("java not found: install a JDK 17+ (apt-get install openjdk-17-jre).")
        self.data.mkdir(parents=True, exist_ok=True)
        config = self._config()
        cluster_id_file = self.data / "cluster-id"
        if not cluster_id_file.exists():
            raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cluster_id_file.write_text(raw)
        cp = f"{self.libs}/*"
        log4j = f"-Dlog4j2.configurationFile={self.data / 'log4j2.properties'}"
        subprocess.run(
            [
                java,
                log4j,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id_file.read_text().strip(),
                "-c",
                str(config),
                "--ignore-formatted",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("a"),
        )
        with self.log.open("a") as log:
            proc = subprocess.Popen(
                [
                    java,
                    "-Xms256m",
                    "-Xmx512m",
                    "-XX:+UseG1GC",
                    log4j,
                    f"-Dkafka.logs.dir={LOGS}",
                    "-cp",
                    cp,
                    "kafka.Kafka",
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pidfile.write_text(str(proc.pid))

    async def ready(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}")
        await admin.start()
        try:
            await admin.list_topics()
            # Consumer groups work only once the offsets topic exists: a fresh broker answers
            # metadata seconds before that, and the first group (a test's, a benchmark's) failed.
            await admin.find_coordinator("nexwatt-stack-ready")
        finally:
            await admin.close()


class Postgres(Server):
    def __init__(self) -> None:
        super().__init__(
            "postgres",
            POSTGRES_PORT,
            {"NEXWATT_POSTGRES_URL": f"postgresql://nexwatt:nexwatt@127.0.0.1:{POSTGRES_PORT}"},
        )

    @property
    def pidfile(self) -> Path:
        return self.data / "pgdata" / "postmaster.pid"

    def _bin(self, tool: str) -> str:
        found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
        if found:
            return str(found[-1])
        path = shutil.which(tool)
        if path is None:
            raise SystemExit(f"PostgreSQL's {tool} not found: run `make setup` first.")
        return path

    def _as_owner(self, argv: list[str]) -> list[str]:
        # The server refuses to run as root: run it as the `postgres` system user then.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _chown(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for p in paths:
                os.chown(p, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        pgdata, run = self.data / "pgdata", self.data / "run"
        for d in (self.data, run):
            d.mkdir(parents=True, exist_ok=True)
        self._chown(self.data, run)
        self.log.touch()
        self._chown(self.log)
        if not (pgdata / "PG_VERSION").exists():
            shutil.rmtree(pgdata, ignore_errors=True)
            subprocess.run(
                self._as_owner(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        "nexwatt",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={POSTGRES_PORT} "
            f"-c unix_socket_directories={run} -c max_connections=200 -c fsync=off"
        )
        subprocess.run(
            self._as_owner(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.pid() is not None:
            subprocess.run(
                self._as_owner(
                    [
                        self._bin("pg_ctl"),
                        "-D",
                        str(self.data / "pgdata"),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                ),
                check=False,
                stdout=subprocess.DEVNULL,
            )
        super().stop()

    async def ready(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.env["NEXWATT_POSTGRES_URL"] + "/postgres")
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()


class Redis(Server):
    def __init__(self) -> None:
        super().__init__(
            "redis", REDIS_PORT, {"NEXWATT_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0"}
        )

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found: run `make setup` first.")
        self.data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                binary,
                "--port",
                str(REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.log),
                "--dir",
                str(self.data),
                "--save",
                "",
                "--appendonly",
                "no",
                # No snapshots while running, one on SIGTERM: data survives a stop and start.
                "--shutdown-on-sigterm",
                "save",
            ],
            check=True,
        )

    async def ready(self) -> None:
        from redis.asyncio import Redis as Client

        client = Client.from_url(self.env["NEXWATT_REDIS_URL"])
        try:
            await client.ping()
        finally:
            await client.aclose()


SERVERS: list[Server] = [Kafka(), Postgres(), Redis()]
NAMES = [s.name for s in SERVERS]


def _named(names: Sequence[str]) -> list[Server]:
    """The servers called `names` (every one when none is named); a named server must be ours."""
    if not names:
        return SERVERS
    chosen = [s for s in SERVERS if s.name in names]
    for server in chosen:
        if server.external():
            raise SystemExit(f"{server.name} is external (from the environment): not ours")
    return chosen


async def _bring_up(server: Server) -> str:
    if server.external():
        return "external (from the environment)"
    if server.pid() is not None:
        try:
            await _poll(server.ready, timeout_s=15)
            return f"running (pid {server.pid()})"
        except Exception:
            print(f"    {server.name}: running but not answering; restarting it", flush=True)
            await asyncio.to_thread(server.stop)
    else:
        server.pidfile.unlink(missing_ok=True)  # stale: its process is gone
        if _port_open(server.port):
            raise SystemExit(
                f"{server.name}: port {server.port} on 127.0.0.1 is taken by another process; "
                "stop it, or point NEXWATT_* settings at it (see README)."
            )
    t0 = time.monotonic()
    await asyncio.to_thread(server.start)
    try:
        await _poll(server.ready, timeout_s=READY_TIMEOUT_S)
    except Exception as exc:
        raise SystemExit(
            f"{server.name} did not become ready in {READY_TIMEOUT_S:.0f}s ({exc!r}).\n"
            f"Last lines of {server.log}:\n{_tail(server.log)}"
        ) from exc
    return f"started in {time.monotonic() - t0:.1f}s (pid {server.pid()})"


def up(names: Sequence[str] = ()) -> None:
    """Start the named servers (all when none is named) and wait until each answers."""
    LOGS.mkdir(parents=True, exist_ok=True)
    servers = _named(names)

    async def all_up() -> list[str]:
        return list(await asyncio.gather(*(_bring_up(s) for s in servers)))

    for server, state in zip(servers, asyncio.run(all_up()), strict=True):
        print(f"    {server.name:<9} 127.0.0.1:{server.port:<6} {state}", flush=True)
    env = {k: v for s in SERVERS if not s.external() for k, v in s.env.items()}
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    print(f"    settings written to {ENV_FILE.relative_to(ROOT)}")


def down(names: Sequence[str] = ()) -> None:
    """Stop the named servers (all when none is named); their data stays."""
    for server in _named(names):
        was = server.pid()
        t0 = time.monotonic()
        server.stop()
        state = f"stopped in {time.monotonic() - t0:.1f}s" if was else "not running"
        print(f"    {server.name:<9} {state}", flush=True)


def restart(name: str) -> None:
    """Stop one server and start it again on the same data, waiting until it answers."""
    down([name])
    up([name])


def reset() -> None:
    """Stop the servers, delete their data, start them again: a clean slate."""
    down()
    for server in SERVERS:
        if server.external():
            print(f"    {server.name:<9} external: its data is left alone")
        else:
            shutil.rmtree(server.data, ignore_errors=True)
    up()


def status() -> int:
    async def check(server: Server) -> str:
        if server.pid() is None:
            return "down"
        try:
            await asyncio.wait_for(server.ready(), timeout=10)
            return f"ready (pid {server.pid()})"
        except Exception as exc:
            return f"not answering ({exc.__class__.__name__})"

    async def all_checks() -> list[str]:
        return list(await asyncio.gather(*(check(s) for s in SERVERS)))

    states = asyncio.run(all_checks())
    for server, state in zip(SERVERS, states, strict=True):
        print(f"    {server.name:<9} 127.0.0.1:{server.port:<6} {state}   log: {server.log}")
    return 0 if all(s.startswith("ready") for s in states) else 1


def logs(lines: int) -> None:
    for server in SERVERS:
        print(f"---- last {lines} lines of {server.log} ----")
        print(_tail(server.log, lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["up", "down", "reset", "status", "logs", "start", "stop", "restart"],
    )
    parser.add_argument("server", nargs="?", choices=NAMES, help="for start, stop and restart")
    parser.add_argument("--lines", type=int, default=40, help="for `logs`: lines per server")
    args = parser.parse_args()
    one_server = args.command in ("start", "stop", "restart")
    if one_server != (args.server is not None):
        parser.error("start, stop and restart take one server name; the other commands none")
    # aiokafka logs every refused connection while the broker boots; the poll reports instead.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.command in ("up", "start"):
        up([args.server] if one_server else [])
    elif args.command in ("down", "stop"):
        down([args.server] if one_server else [])
    elif args.command == "restart":
        restart(args.server)
    elif args.command == "reset":
        reset()
    elif args.command == "status":
        sys.exit(status())
    else:
        logs(args.lines)


if __name__ == "__main__":
    main()
