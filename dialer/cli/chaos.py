"""Many hosts on one machine, and the faults between them: partitions that hold traffic.

A *host* is a set of the dialer's processes (the HTTP API, a Celery worker, beat) whose
every connection to PostgreSQL, Redis, the broker and the carrier goes through that host's
own `FaultProxy` on loopback, and whose API the carrier reaches through it too. Cutting a
host holds its traffic the way a network partition does: connections stay open, nothing
flows either way, new connections are accepted but reach nothing; healing lets the held
bytes through, in order. (Closing the connections instead would be a crash, which
`tests/e2e` covers with SIGKILL; a partition is worse: the cut-off processes keep running
and wake later with work in flight.)

`chaos_stack` starts the carrier simulator and the hosts; `CarrierWitness` reads the
promises at the carrier (`GET /_sim/stats`, `GET /_sim/timeline`), never from the dialer's
own bookkeeping. Used by `dialer demo --hosts N --chaos` and by `tests/distributed`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis
from celery import Celery

from dialer.cli.devstack import (
    STARTUP_TIMEOUT_S,
    child,
    free_port,
    signals_stop_the_stack,
    wait_http,
)
from dialer.errors import DialerError
from dialer.metrics import MULTIPROC_ENV
from dialer.pool import Keys
from dialer.runtime import redis_client
from dialer.settings import Settings
from workers.app import create_app

CHUNK = 65536
"""Bytes a proxy reads at a time from one side of a connection."""
PROXY_START_TIMEOUT_S = 10.0


class FaultProxy:
    """A TCP proxy on loopback for one host's links, on its own asyncio loop in a thread.

    `link(name, host, port)` opens a listening port that forwards to `host:port`; `cut()`
    holds every link, `cut("pg")` the named ones (no byte read or written, new connections
    accepted and held before they reach the upstream); `heal()` lets them all flow again.
    Connections are never closed by a cut.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._gates: dict[str, asyncio.Event] = {}
        self._servers: list[asyncio.Server] = []
        self._upstream_ports: set[int] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=name)
        self._thread.start()

    def link(self, name: str, host: str, port: int) -> int:
        """Listen on a free loopback port that forwards to `host:port`; returns the port."""

        async def listen() -> int:
            gate = self._gates[name] = asyncio.Event()
            gate.set()
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, gate, host, port), "127.0.0.1", 0
            )
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        future = asyncio.run_coroutine_threadsafe(listen(), self._loop)
        return future.result(PROXY_START_TIMEOUT_S)

    def cut(self, *links: str) -> None:
        """Hold every byte on the named links (all when none is named) until `heal`."""
        for name in links or tuple(self._gates):
            self._loop.call_soon_threadsafe(self._gates[name].clear)

    def heal(self) -> None:
        """Let held and new traffic flow again on every link."""
        for gate in self._gates.values():
            self._loop.call_soon_threadsafe(gate.set)

    def upstream_ports(self) -> set[int]:
        """The local ports of this proxy's open connections to its upstreams: how the
        upstream (Redis's `CLIENT LIST`) tells this host's clients from others'."""
        return set(self._upstream_ports)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        host: str,
        port: int,
    ) -> None:
        await gate.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        local_port = int(up_writer.get_extra_info("sockname")[1])
        self._upstream_ports.add(local_port)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, gate), self._pump(up_reader, writer, gate)
            )
        finally:
            self._upstream_ports.discard(local_port)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        """Copy `source` to `sink` while `gate` is open; close `sink` at the end."""
        try:
            while True:
                await gate.wait()
                data = await source.read(CHUNK)
                if not data:
                    break
                await gate.wait()  # read just before a cut: held, not delivered
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()


def via(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port` (credentials, path and
    query kept): the same service, reached through a proxy."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@dataclass
class Host:
    """One host: its proxy, the environment its processes run with, and its processes by
    role (`api`, `worker`, `beat`)."""

    name: str
    proxy: FaultProxy
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    worker_name: str = ""

    def cut(self, *links: str) -> None:
        """Cut the host off: every link, or the named ones (`pg`, `redis`, `carrier`, and
        `api` for the host serving the API)."""
        self.proxy.cut(*links)

    def heal(self) -> None:
        self.proxy.heal()


@dataclass
class ChaosStack:
    """The running hosts: the carrier's URL, the API's public URL (through the first
    host's proxy), the shared environment and a Celery client (direct, not proxied)."""

    sim_url: str
    api_url: str
    hosts: list[Host]
    env: dict[str, str]
    celery: Celery
    redis: redis.Redis

    def kick_pacer(self, account_id: int) -> None:
        """Ask the hosts' workers to run the account's pacer."""
        self.celery.send_task("dialer.pacer", kwargs={"account_id": account_id}, queue="pacer")

    def pacer_host(self, account_id: int, timeout_s: float = 10.0) -> Host:
        """The host whose worker runs the account's pacer: the one whose Redis connection
        sleeps on the account's wake list (`BLPOP`, seen in `CLIENT LIST`), waited for up
        to `timeout_s` (a round in progress is not sleeping).

        Raises:
            TimeoutError: no pacer was seen sleeping in time.
        """
        db = int(self.redis.connection_pool.connection_kwargs.get("db", 0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.redis.exists(Keys(account_id).pacer_lock()):
                for client in self.redis.client_list():
                    # Celery's Redis transport waits with BRPOP; only a pacer sleeps in
                    # BLPOP. (`CLIENT LIST` does not name the key: one account's pacer per
                    # database, as the tests and the demo run.)
                    if client.get("cmd") != "blpop" or int(client.get("db", -1)) != db:
                        continue
                    port = int(client["addr"].rsplit(":", 1)[1])
                    for host in self.hosts:
                        if port in host.proxy.upstream_ports():
                            return host
            time.sleep(0.1)
        raise TimeoutError(f"no pacer of account {account_id} seen sleeping")


@dataclass(frozen=True)
class Figures:
    """What the carrier saw (`GET /_sim/stats`): calls created, most live at once, most
    creates in any one-second window, most dials of one number, calls live now."""

    calls_created: int
    max_concurrent: int
    max_cps: int
    max_dials_per_number: int
    live: int

    def violations(self, cap: int, cps: float, dials_per_number: int) -> list[str]:
        """The promises broken: live calls above `cap`, more than `cps` creates in a
        second, a number dialled more than `dials_per_number` times."""
        out = []
        if self.max_concurrent > cap:
            out.append(f"{self.max_concurrent} calls live at once, cap {cap}")
        if self.max_cps > cps:
            out.append(f"{self.max_cps} creates in one second, limit {cps:g}")
        if self.max_dials_per_number > dials_per_number:
            out.append(
                f"a number dialled {self.max_dials_per_number} times, "
                f"at most {dials_per_number} allowed"
            )
        return out


class CarrierWitness:
    """Reads the carrier simulator's own record: the promises' independent witness."""

    def __init__(self, sim_url: str) -> None:
        self.sim_url = sim_url

    def figures(self) -> Figures:
        stats = httpx.get(f"{self.sim_url}/_sim/stats", timeout=5.0).json()
        return Figures(
            calls_created=stats["calls_created"],
            max_concurrent=stats["max_concurrent"],
            max_cps=stats["max_cps"],
            max_dials_per_number=stats["max_dials_per_number"],
            live=stats["live"],
        )

    def creates(self) -> list[float]:
        """The carrier's monotonic clock at every create request it turned into a call,
        with its clock now last: `(creates, now)` as one list whose last item is now."""
        timeline = httpx.get(f"{self.sim_url}/_sim/timeline", timeout=5.0).json()
        return [*timeline["creates"], timeline["now"]]


@contextmanager
def chaos_stack(
    settings: Settings,
    run_dir: Path,
    *,
    hosts: int = 3,
    time_scale: float,
    seed: int = 7,
    worker_concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[ChaosStack]:
    """Start the carrier simulator and `hosts` hosts; yield; stop them all (also on SIGHUP
    and SIGTERM, as `devstack.local_stack`).

    The first host runs the API (the carrier's callbacks reach it through that host's
    proxy), a worker and beat; the second a worker and beat; the others a worker. Every
    worker consumes every queue. Logs go to `run_dir/<host>-<role>.log`.

    Each host's links: `pg`, `redis`, `carrier`, `broker` (when `settings` names a
    `CELERY_BROKER_URL`), and `api` on the first. With `REDIS_SENTINELS` set, the hosts
    ask the Sentinels for the master and reach it directly: a cut does not hold their Redis
    traffic (the fault there is the failover itself).

    Raises:
        DialerError: `startup_failed` when a part does not come up.
    """
    if hosts < 2:
        raise ValueError("a chaos stack needs two hosts at least")
    run_dir.mkdir(parents=True, exist_ok=True)
    sim_port, api_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    base_env = {
        **os.environ,
        "PROVIDER": "simulator",
        "SIMULATOR_PORT": str(sim_port),
        "DEV_TIME_SCALE": str(min(time_scale, 1.0)),
        "WORKER_METRICS_PORT": "0",
        **(extra_env or {}),
    }
    base_env.pop(MULTIPROC_ENV, None)
    py = sys.executable
    if settings.redis_sentinels:
        base_env["REDIS_SENTINELS"] = settings.redis_sentinels
        base_env["REDIS_SENTINEL_MASTER"] = settings.redis_sentinel_master
    pg = _address(settings.database_url, 5432)
    rd = _address(settings.redis_url, 6379)
    with signals_stop_the_stack(), ExitStack() as stack:
        sim = stack.enter_context(
            child(
                [py, "-m", "dialer", "simulator", "--port", str(sim_port),
                 "--time-scale", str(time_scale), "--seed", str(seed)],
                base_env,
                run_dir / "simulator.log",
            )
        )  # fmt: skip
        wait_http(f"{sim_url}/_sim/stats", sim, "carrier simulator")
        started: list[Host] = []
        api_url = ""
        for n in range(1, hosts + 1):
            proxy = FaultProxy(f"host{n}")
            stack.callback(proxy.close)
            stack.callback(proxy.heal)  # never stop a stack with a host cut off
            if n == 1:
                api_url = f"http://127.0.0.1:{proxy.link('api', '127.0.0.1', api_port)}"
            carrier = proxy.link("carrier", "127.0.0.1", sim_port)
            env = {
                **base_env,
                "DATABASE_URL": via(settings.database_url, proxy.link("pg", *pg)),
                "REDIS_URL": settings.redis_url
                if settings.sentinels
                else via(settings.redis_url, proxy.link("redis", *rd)),
                "TWILIO_BASE_URL": f"http://127.0.0.1:{carrier}",
                "PUBLIC_BASE_URL": api_url,
            }
            if settings.celery_broker_url:
                broker = proxy.link("broker", *_address(settings.celery_broker_url, 5672))
                env["CELERY_BROKER_URL"] = via(settings.celery_broker_url, broker)
            host = Host(f"host{n}", proxy, env, worker_name=f"host{n}-{os.getpid()}@%h")
            _start_host(stack, host, run_dir, api_port if n == 1 else None, n <= 2,
                        worker_concurrency)  # fmt: skip
            started.append(host)
        wait_http(f"{api_url}/healthz", started[0].processes["api"], "HTTP API")
        httpx.post(f"{sim_url}/_sim/reset", timeout=5.0).raise_for_status()
        celery = create_app(settings)
        client = redis_client(settings)
        try:
            yield ChaosStack(sim_url, api_url, started, base_env, celery, client)
        finally:
            celery.close()
            client.close()


def _start_host(
    stack: ExitStack,
    host: Host,
    run_dir: Path,
    api_port: int | None,
    beat: bool,
    worker_concurrency: int,
) -> None:
    py = sys.executable
    if api_port is not None:
        api_metrics = run_dir / f"{host.name}-api-metrics"
        api_metrics.mkdir(exist_ok=True)
        host.processes["api"] = stack.enter_context(
            child(
                [py, "-m", "uvicorn", "dialer.web.asgi:app", "--port", str(api_port),
                 "--log-level", "warning", "--no-access-log"],
                {**host.env, MULTIPROC_ENV: str(api_metrics)},
                run_dir / f"{host.name}-api.log",
            )
        )  # fmt: skip
    host.processes["worker"] = stack.enter_context(
        child(
            [py, "-m", "celery", "-A", "workers", "worker", "--loglevel", "WARNING",
             "-c", str(worker_concurrency), "-Q", "dials,pacer,maintenance,webhooks",
             "-n", host.worker_name, "--without-gossip", "--without-mingle"],
            host.env,
            run_dir / f"{host.name}-worker.log",
            parent_death_signal=signal.SIGQUIT,
        )
    )  # fmt: skip
    if beat:
        host.processes["beat"] = stack.enter_context(
            child(
                [py, "-m", "celery", "-A", "workers", "beat", "--loglevel", "WARNING",
                 "-s", str(run_dir / f"{host.name}-beat-schedule")],
                host.env,
                run_dir / f"{host.name}-beat.log",
            )
        )  # fmt: skip


SENTINEL_MASTER = "dialer-demo"
"""The name a `SentinelGroup`'s Sentinels monitor the master under."""


@dataclass
class SentinelGroup:
    """A Redis master with two replicas and three Sentinels on loopback, each a child
    process writing its log in `run_dir` (`sentinel_group`).

    The servers run with `min-replicas-to-write 1` (`min-replicas-max-lag 10`): a master cut
    off from both replicas refuses writes; two replicas leave a promoted one a replica to
    write with. Sentinels judge a silent master down after 1 s (`down-after-milliseconds`).
    """

    run_dir: Path
    ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sentinels(self) -> str:
        """`REDIS_SENTINELS` for this group."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers names it.

        Raises:
            redis.RedisError: no Sentinel answers.
        """
        error: redis.RedisError = redis.ConnectionError("no Sentinel")
        for port in self.sentinel_ports:
            try:
                address = redis.Redis(port=port).sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                assert isinstance(address, tuple)  # redis-py's reply for this command
                return int(address[1])
            except redis.RedisError as failed:
                error = failed
        raise error

    def kill_master(self) -> int:
        """SIGKILL the master (no shutdown, no last save); returns its port."""
        port = self.master_port()
        self.servers[port].kill()
        self.servers[port].wait()
        return port

    def promoted(self, old_port: int) -> bool:
        """The Sentinels name a master other than `old_port` that has a replica again."""
        try:
            port = self.master_port()
            info = redis.Redis(port=port).info("replication")
        except redis.RedisError:
            return False
        return port != old_port and info["role"] == "master" and info["connected_slaves"] >= 1


@contextmanager
def sentinel_group(run_dir: Path) -> Iterator[SentinelGroup]:
    """Start a `SentinelGroup`; yield it once the replicas are in sync and every Sentinel
    sees the others; stop every process on exit.

    Raises:
        DialerError: `startup_failed` when it does not come up in time.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    group = SentinelGroup(run_dir, [free_port() for _ in range(3)], [free_port() for _ in range(3)])
    master = group.ports[0]
    with ExitStack() as stack:
        for port in group.ports:
            args = [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(run_dir), "--dbfilename", f"{port}.rdb",
                "--maxmemory-policy", "noeviction", "--min-replicas-to-write", "1",
                "--min-replicas-max-lag", "10",
            ]  # fmt: skip
            if port != master:
                args += ["--replicaof", "127.0.0.1", str(master)]
            group.servers[port] = stack.enter_context(
                child(args, dict(os.environ), run_dir / f"redis-{port}.log")
            )
        for port in group.sentinel_ports:
            conf = run_dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {run_dir}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
            )
            stack.enter_context(
                child(
                    ["redis-server", str(conf), "--sentinel"],
                    dict(os.environ),
                    run_dir / f"sentinel-{port}.log",
                )
            )
        _wait(
            lambda: all(
                redis.Redis(port=p).info("replication").get("master_link_status") == "up"
                for p in group.ports[1:]
            ),
            "the replicas in sync",
        )
        _wait(
            lambda: all(len(_sentinels(redis.Redis(port=p))) == 2 for p in group.sentinel_ports),
            "the Sentinels to see each other",
        )
        yield group


def _sentinels(client: redis.Redis) -> list[Any]:
    """The other Sentinels one Sentinel knows of (`SENTINEL SENTINELS`)."""
    known = client.sentinel_sentinels(SENTINEL_MASTER)
    assert isinstance(known, list)  # redis-py's reply for this command
    return known


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        with suppress(redis.RedisError):
            if predicate():
                return
        time.sleep(0.1)
    raise DialerError("startup_failed", f"timed out waiting for {what}")
