"""`dialer demo --hosts N --chaos`: one campaign across N hosts of this machine, with a
partition in its middle (and with `--sentinel`, a Redis failover after it), and the
promises printed as they are read at the carrier.

The hosts are `dialer.cli.chaos` hosts (each behind its own fault proxy). Once a quarter of
the contacts have been called, the host whose worker runs the account's pacer is cut off
(its connections held open, nothing flowing) for longer than the pacer lock's TTL, then
healed: another host's pacer takes over, and the old one, waking with its round in flight,
is fenced off. With `--sentinel` the pool's Redis is a master with two replicas behind
three Sentinels (`dialer.cli.chaos.SentinelGroup`; the second host is the one cut, since
the hosts reach Redis past their proxies); once dialling has recovered from the partition,
the master is killed, a replica is promoted, and the pacer rebuilds the pool from
PostgreSQL before its next admission (`dialer.pool.reconcile`). Every second a line shows
what the carrier saw: calls created, live calls against the cap, the most creates in any
second against the CPS limit, the most dials of one number against the attempts allowed; at
the end, the calls placed before, during and after the partition, how long dialling
stalled, and whether every promise held.
"""

from __future__ import annotations

import itertools
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from campaigns import lifecycle
from campaigns.reports import campaign_report
from dialer.cli.chaos import (
    SENTINEL_MASTER,
    CarrierWitness,
    ChaosStack,
    Figures,
    Host,
    SentinelGroup,
    chaos_stack,
    sentinel_group,
)
from dialer.cli.common import cli_actor
from dialer.cli.demo import DemoOptions, create_demo_campaign, report_command
from dialer.dispatch.pacer import LOCK_TTL_S
from dialer.runtime import Runtime
from dialer.settings import Settings, get_settings
from models import transaction
from models.migrate import upgrade

DEFAULT_CONTACTS = 80
CALL_S = 3.0
"""Real seconds an answered call lasts (about): the campaign outlives the partition."""
CUT_S = LOCK_TTL_S + 10.0
"""How long the pacer's host is cut off: its lock lapses, and a beat's kick follows."""
LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
"""The broker `--broker rabbitmq` uses when `CELERY_BROKER_URL` names none (the local
node `scripts/services.sh` starts)."""
FINISH_TIMEOUT_S = 600.0


def run_chaos_demo(options: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the demo across `options.hosts` hosts with the partition; returns the summary:

    `{"campaign_id", "account", "hosts", "broker", "cut_host", "calls_before",
    "calls_during", "calls_after", "cut_s", "stall_s", "recover_s", "max_concurrent",
    "max_cps", "max_dials_per_number", "violations", "elapsed_s", "report_command",
    "logs"}`: calls as the carrier created them; `stall_s` the longest time without a
    call created from the cut to the first call after the heal, `recover_s` from the heal
    to that call (seconds); `violations` the promises broken (empty when every one held).
    With `--sentinel`, also `"failover_s"` (the master killed to a replica promoted) and
    `"calls_after_failover_s"` (to the next call created), when the campaign was still
    running after the partition.

    Raises:
        DialerError: `startup_failed` when a part does not come up.
        StackStopped: SIGHUP or SIGTERM arrived; every child has been stopped.
    """
    settings = _settings(options)
    upgrade(settings.migration_url)
    run_dir = settings.data_dir / "demo-chaos"
    started = time.monotonic()
    if not options.contacts and not options.csv:
        options.contacts = DEFAULT_CONTACTS
    with ExitStack() as outer:
        group = None
        if options.sentinel:
            group = outer.enter_context(sentinel_group(run_dir / "redis"))
            settings.redis_url = f"redis://127.0.0.1:{group.ports[0]}/0"
            settings.redis_sentinels = group.sentinels
            settings.redis_sentinel_master = SENTINEL_MASTER
        result = _run(options, settings, run_dir, started, group, console)
    if not options.as_json:
        _print_summary(result, options, console)
    return result


def _run(
    options: DemoOptions,
    settings: Settings,
    run_dir: Path,
    started: float,
    group: SentinelGroup | None,
    console: Console,
) -> dict[str, Any]:
    with chaos_stack(
        settings,
        run_dir,
        hosts=options.hosts,
        time_scale=options.time_scale,
        seed=options.seed,
    ) as stack:
        talk = CALL_S / options.time_scale
        _post(stack, "/_sim/config", {"talk": {"median_s": talk, "minimum_s": talk / 2}})
        imported, account = create_demo_campaign(
            options, settings.database_url, settings.data_dir, stack.sim_url, stack.api_url
        )
        with transaction(settings.database_url) as session:
            lifecycle.start(session, account.id, imported.campaign_id, actor=cli_actor())
        stack.kick_pacer(account.id)
        say = _Printer(console, options, CarrierWitness(stack.sim_url), started)
        say.line(f"{options.hosts} hosts up; campaign {imported.campaign_id} started")
        total = imported.summary.accepted
        watch = _Watch(Runtime(settings), account.id, imported.campaign_id)
        say.until(lambda f: f.calls_created >= max(1, total // 4) or watch.finished(), 120)
        before = say.witness.figures().calls_created
        host = stack.hosts[1] if group else _pacer_host(stack, account.id)
        cut_at = time.monotonic()
        say.line(f"cutting {host.name} off (its worker runs the pacer) for {CUT_S:.0f} s")
        host.cut()
        try:
            say.until(lambda _: time.monotonic() - cut_at >= CUT_S, CUT_S + 5)
        finally:
            host.heal()
        healed_at = time.monotonic()
        during = say.witness.figures().calls_created - before
        say.line(f"healed {host.name}")
        say.until(lambda f: f.calls_created > before + during or watch.finished(), 120)
        recovered_at = time.monotonic()
        failover: dict[str, Any] = {}
        if group is not None and not watch.finished():
            failover = _failover(group, say, watch)
        say.until(lambda f: watch.finished() and f.live == 0, FINISH_TIMEOUT_S)
        figures = say.witness.figures()
        stall = _stall(say.witness, cut_at)
    violations = figures.violations(options.max_concurrency, options.cps, options.max_attempts)
    result = {
        "campaign_id": imported.campaign_id,
        "account": account.name,
        "hosts": options.hosts,
        "broker": options.broker,
        "cut_host": host.name,
        "calls_before": before,
        "calls_during": during,
        "calls_after": figures.calls_created - before - during,
        "cut_s": round(healed_at - cut_at, 1),
        "stall_s": round(stall, 1),
        "recover_s": round(recovered_at - healed_at, 1),
        "max_concurrent": figures.max_concurrent,
        "max_cps": figures.max_cps,
        "max_dials_per_number": figures.max_dials_per_number,
        "violations": violations,
        **failover,
        "elapsed_s": round(time.monotonic() - started, 1),
        "report_command": report_command(imported.campaign_id, account.name),
        "logs": str(run_dir.resolve()),
    }
    return result


def _failover(group: SentinelGroup, say: _Printer, watch: _Watch) -> dict[str, Any]:
    """Kill the Redis master, wait for Sentinel to promote a replica, then for the next
    call; returns `{"failover_s", "calls_after_failover_s"}` (seconds from the kill)."""
    before = say.witness.figures().calls_created
    killed_at = time.monotonic()
    port = group.kill_master()
    say.line(f"killed the Redis master (port {port}); Sentinel promotes a replica")
    say.until(lambda _: group.promoted(port), 60)
    promoted_s = time.monotonic() - killed_at
    say.line(f"a replica was promoted {promoted_s:.1f} s after the kill")
    say.until(lambda f: f.calls_created > before or watch.finished(), 120)
    return {
        "failover_s": round(promoted_s, 1),
        "calls_after_failover_s": round(time.monotonic() - killed_at, 1),
    }


def _settings(options: DemoOptions) -> Settings:
    settings = get_settings().model_copy()
    if options.broker == "rabbitmq" and not settings.broker_is_amqp:
        settings.celery_broker_url = LOCAL_RABBITMQ
    elif options.broker == "redis":
        settings.celery_broker_url = None
    return settings


def _post(stack: ChaosStack, path: str, body: dict[str, Any]) -> None:
    import httpx

    httpx.post(stack.sim_url + path, json=body, timeout=5.0).raise_for_status()


def _pacer_host(stack: ChaosStack, account_id: int) -> Host:
    """The host running the account's pacer; the second host when it cannot be told (the
    hosts reach Redis through Sentinel, past their proxies)."""
    try:
        return stack.pacer_host(account_id)
    except TimeoutError:
        return stack.hosts[1]


def _stall(witness: CarrierWitness, since: float) -> float:
    """The longest time without a create at the carrier from `since` (`time.monotonic()`
    of this process) to its last create, in seconds."""
    *creates, now = witness.creates()
    start = now - (time.monotonic() - since)
    marks = [start, *[c for c in creates if c >= start]]
    return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)


class _Watch:
    """Whether the campaign has finished (its report)."""

    def __init__(self, runtime: Runtime, account_id: int, campaign_id: int) -> None:
        self.runtime = runtime
        self.url = runtime.settings.database_url
        self.account_id = account_id
        self.campaign_id = campaign_id
        self._done = False

    def finished(self) -> bool:
        if not self._done:
            with transaction(self.url) as session:
                report = campaign_report(
                    session, self.runtime.pool, self.account_id, self.campaign_id
                )
            self._done = report.finished
        return self._done


class _Printer:
    """Prints one line a second of the carrier's figures against the promises."""

    def __init__(
        self, console: Console, options: DemoOptions, witness: CarrierWitness, started: float
    ) -> None:
        self.console = console
        self.options = options
        self.witness = witness
        self.started = started
        self._last = 0.0

    def line(self, text: str) -> None:
        if not self.options.as_json:
            elapsed = time.monotonic() - self.started
            self.console.print(
                f"[{elapsed:6.1f} s] {text}", highlight=False, markup=False, soft_wrap=True
            )

    def until(self, done: Any, timeout_s: float) -> None:
        """Print the figures every second until `done(figures)` or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            figures = self.witness.figures()
            if time.monotonic() - self._last >= 1.0:
                self._last = time.monotonic()
                self.line(self._figures(figures))
            if done(figures):
                return
            time.sleep(0.2)

    def _figures(self, f: Figures) -> str:
        o = self.options
        broken = f.violations(o.max_concurrency, o.cps, o.max_attempts)
        return (
            f"calls {f.calls_created} | live {f.live}, most {f.max_concurrent}/"
            f"{o.max_concurrency} | creates/s most {f.max_cps}/{o.cps:g} | dials/number most "
            f"{f.max_dials_per_number}/{o.max_attempts} | "
            + ("BROKEN: " + "; ".join(broken) if broken else "ok")
        )


def _print_summary(result: dict[str, Any], options: DemoOptions, console: Console) -> None:
    violations = result["violations"]
    lines = [
        f"Partition: {result['cut_host']} cut off {result['cut_s']} s; calls before "
        f"{result['calls_before']}, during {result['calls_during']}, after "
        f"{result['calls_after']}; dialling stalled {result['stall_s']} s at most; first call "
        f"{result['recover_s']} s after the heal",
        f"At the carrier: most live {result['max_concurrent']} (cap {options.max_concurrency}), "
        f"most creates in a second {result['max_cps']} (limit {options.cps:g}), most dials of "
        f"one number {result['max_dials_per_number']} (attempts {options.max_attempts})",
        *(
            [
                f"Redis failover: a replica promoted {result['failover_s']} s after the "
                f"master was killed; the next call {result['calls_after_failover_s']} s after"
            ]
            if "failover_s" in result
            else []
        ),
        "Every promise held" if not violations else "BROKEN: " + "; ".join(violations),
        f"Report: {result['report_command']}",
        f"Logs: {result['logs']}",
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
