"""The test's own servers to fail: a Redis master with replicas behind three Sentinels, a
RabbitMQ node, a PostgreSQL cluster. Each runs on free loopback ports in a temporary
directory, is started and stopped by the test, and never touches the machine's shared
services (the shared PostgreSQL and Redis are left alone: we kill and restart ours).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dialer.cli.devstack import free_port

MASTER_NAME = "dialer-test"
"""The name the Sentinels monitor the master under (`REDIS_SENTINEL_MASTER`)."""
DOWN_AFTER_MS = 1000
"""Sentinel's `down-after-milliseconds`: how long a silent master takes to be judged down."""
START_TIMEOUT_S = 60.0
"""Longest wait for one server to come up (RabbitMQ is the slowest: ~5-10 s)."""


def wait_for(predicate: object, timeout_s: float, what: str) -> float:
    """Poll `predicate()` every 50 ms until it is true; the seconds it took.

    Raises:
        AssertionError: not true after `timeout_s` seconds.
    """
    assert callable(predicate)
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (OSError, redis.RedisError, subprocess.SubprocessError):
            pass
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisGroup:
    """A Redis master, two replicas and three Sentinels on loopback.

    Every server runs with `min-replicas-to-write 1` (`min-replicas-max-lag 10`): a master
    that lost every replica refuses writes rather than accept ones a failover would lose;
    two replicas leave the promoted one a replica to write with.
    """

    workdir: Path
    ports: list[int] = field(default_factory=list)
    """The Redis servers' ports, the first started as the master."""
    sentinel_ports: list[int] = field(default_factory=list)
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> str:
        """`REDIS_SENTINELS` for this group."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start_server(self, port: int, master_port: int | None) -> None:
        args = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--dbfilename", f"dump-{port}.rdb", "--maxmemory-policy", "noeviction",
            "--min-replicas-to-write", "1", "--min-replicas-max-lag", "10",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if master_port is not None:
            args += ["--replicaof", "127.0.0.1", str(master_port)]
        with (self.workdir / f"redis-{port}.log").open("ab") as log:
            self.servers[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: redis.Redis(port=port).ping(), START_TIMEOUT_S, f"redis on {port}")

    def start(self) -> None:
        self.ports = [free_port() for _ in range(3)]
        self.start_server(self.ports[0], None)
        for port in self.ports[1:]:
            self.start_server(port, self.ports[0])
        for port in self.ports[1:]:
            wait_for(
                lambda port=port: (
                    redis.Redis(port=port).info("replication")[  # type: ignore[misc]
                        "master_link_status"
                    ]
                    == "up"
                ),
                START_TIMEOUT_S,
                f"replica {port} in sync",
            )
        self.sentinel_ports = [free_port() for _ in range(3)]
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports[0]} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
            with (self.workdir / f"sentinel-{port}.log").open("ab") as log:
                self.sentinels.append(
                    subprocess.Popen(
                        ["redis-server", str(conf), "--sentinel"],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for port in self.sentinel_ports:
            wait_for(
                lambda port=port: (
                    len(  # type: ignore[misc]
                        redis.Redis(port=port).sentinel_sentinels(MASTER_NAME)
                    )
                    == 2
                    and redis.Redis(port=port).sentinel_master(MASTER_NAME)["num-slaves"] == 2
                ),
                START_TIMEOUT_S,
                f"sentinel {port} to see the group",
            )

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                _, master = redis.Redis(port=port).sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(master)
            except redis.RedisError:
                continue
        raise AssertionError("no Sentinel answers")

    def kill_master(self) -> int:
        """SIGKILL the master (no shutdown, no last save); its port."""
        port = self.master_port()
        self.servers[port].send_signal(signal.SIGKILL)
        self.servers[port].wait()
        return port

    def wait_promoted(self, old_port: int, timeout_s: float = 30.0) -> float:
        """Wait until the Sentinels name a new master that accepts writes; seconds waited."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            role = redis.Redis(port=port).info("replication")
            return bool(role["role"] == "master" and role["connected_slaves"] >= 1)

        return wait_for(promoted, timeout_s, "a replica promoted by Sentinel")

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.servers.values()]:
            _stop(proc)


@contextmanager
def redis_group(workdir: Path) -> Iterator[RedisGroup]:
    """A started `RedisGroup` in `workdir`, stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    group = RedisGroup(workdir)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@dataclass
class RabbitNode:
    """A RabbitMQ node of the test's own (its name, ports, data and logs in `workdir`),
    run as root beside the machine's node: epmd is shared, nothing else."""

    workdir: Path
    port: int = 0
    dist_port: int = 0
    name: str = ""

    @property
    def url(self) -> str:
        """`CELERY_BROKER_URL` for this node (the default `guest` user, loopback only)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
        }

    def ctl(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            env=self.env(),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )

    def start(self) -> float:
        """Start the node and wait until it serves AMQP; seconds it took."""
        if not self.port:
            self.port, self.dist_port = free_port(), free_port()
            self.name = f"dialer-test-{self.port}@localhost"
            (self.workdir / "enabled_plugins").write_text("[].\n")
            (self.workdir / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            )
            (self.workdir / "advanced.config").write_text("[].\n")
            (self.workdir / "rabbitmq-env.conf").write_text(
                "ERL_EPMD_ADDRESS=127.0.0.1\n"
                'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
            )
            if os.getuid() == 0:
                # Debian's rabbitmq-server drops root for the `rabbitmq` user.
                for path in [self.workdir, *self.workdir.iterdir()]:
                    shutil.chown(path, "rabbitmq", "rabbitmq")
        started = time.monotonic()
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        # `-detached` returns before the node registers with epmd: until then
        # `await_startup` fails at once.
        wait_for(
            lambda: self.ctl("await_startup", "--timeout", "30", timeout_s=45).returncode == 0,
            START_TIMEOUT_S,
            f"RabbitMQ node {self.name}",
        )
        return time.monotonic() - started

    def stop(self) -> None:
        self.ctl("stop", timeout_s=60)

    def restart(self) -> float:
        """Stop the node (as `rabbitmqctl stop` does: connections closed, queues kept on
        disk) and start it again; seconds the broker was away."""
        started = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - started


@contextmanager
def service_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory under the system's temporary directory, removed on exit: the
    service users (`rabbitmq`, `postgres`) cannot enter pytest's `tmp_path` (mode 700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def rabbit_node() -> Iterator[RabbitNode]:
    """A started `RabbitNode` in a directory of its own, stopped and removed on exit."""
    with service_dir("dialer-rabbitmq-") as workdir:
        node = RabbitNode(workdir)
        try:
            node.start()
            yield node
        finally:
            node.stop()


PG_BIN = (
    Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
    if Path("/usr/lib/postgresql").exists()
    else Path("/usr/bin")
)
"""Debian's PostgreSQL server programs (`initdb`, `pg_ctl`), newest version."""


@dataclass
class PgCluster:
    """A throwaway PostgreSQL cluster of the test's own on a free port (run as the
    `postgres` user when the test runs as root, as PostgreSQL requires), trusting local
    connections of the `root` role the dialer connects as."""

    workdir: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/dialer"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")

    def start(self) -> None:
        data = self.workdir / "data"
        if not self.port:
            self.port = free_port()
            if os.getuid() == 0:
                shutil.chown(self.workdir, "postgres", "postgres")
            self._run("initdb", "-D", str(data), "-U", "root", "--auth=trust", "-E", "UTF8")
        self._run(
            "pg_ctl", "-D", str(data), "-l", str(self.workdir / "pg.log"), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.workdir / "data"), "-m", mode, "-w", "stop")

    def restart(self) -> float:
        """Stop the server (fast: every session cut, open transactions rolled back) and
        start it; seconds it was away."""
        started = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - started


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started `PgCluster` in a directory of its own, stopped and removed on exit."""
    with service_dir("dialer-pg-") as workdir:
        cluster = PgCluster(workdir)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop("immediate")


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode on a free loopback port in front of one PostgreSQL
    server (run as `postgres`: PgBouncer refuses root), trusting the `root` role."""

    workdir: Path
    server_port: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """A `DATABASE_URL` for `database` through this PgBouncer."""
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.port = free_port()
        (self.workdir / "users.txt").write_text('"root" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.workdir}\n"
            f"auth_type = trust\nauth_file = {self.workdir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            # Few server connections for many clients: transactions of different clients
            # share them, as in production.
            "default_pool_size = 4\nmax_client_conn = 400\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
        )
        for path in [self.workdir, *self.workdir.iterdir()]:
            if os.getuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        command = ["pgbouncer", str(ini)]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            import socket

            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_for(listening, START_TIMEOUT_S, f"pgbouncer on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@contextmanager
def pgbouncer(server_port: int) -> Iterator[PgBouncer]:
    """A started `PgBouncer` (transaction mode) in front of `127.0.0.1:server_port`."""
    with service_dir("dialer-pgbouncer-") as workdir:
        bouncer = PgBouncer(workdir, server_port)
        try:
            bouncer.start()
            yield bouncer
        finally:
            bouncer.stop()
