"""What people watch: a real worker's Prometheus metrics (its prefork children added up),
the API's `/metrics`, the worker's JSON log lines with their bound ids, and Flower's API
behind basic auth, over the dialer's own tasks."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dialer.cli.devstack import child, free_port, wait_http
from dialer.settings import Settings
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_clean_end, start_campaign, wait_finished
from tests.support import METRICS_TOKEN, wait_until
from workers.app import app
from workers.enqueue import PLACE_CALL, SWEEP_WEBHOOKS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample at `url` (Prometheus text), keyed by name and labels; the API's with
    its metrics token."""
    response = httpx.get(url, timeout=10, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str | int) -> float:
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a log file (Celery's start-up banner is not a log line)."""
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def procfile_workers() -> dict[str, tuple[str, int]]:
    """The Procfile's Celery workers: name -> (queues, `WORKER_METRICS_PORT`, default 9808)."""
    workers = {}
    for line in (Path(__file__).parents[2] / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        words = shlex.split(command)
        if "celery" not in words or "worker" not in words:
            continue
        env = dict(w.split("=", 1) for w in words[: words.index("celery")] if "=" in w)
        port = int(env.get("WORKER_METRICS_PORT", Settings().worker_metrics_port))
        workers[name] = (words[words.index("-Q") + 1], port)
    return workers


def test_each_procfile_worker_serves_its_own_tasks_on_its_own_port(stack: Stack) -> None:
    """The Procfile's dialling and webhook workers on one host: each on its own metrics
    port, and what each ran is visible where it is scraped."""
    workers = procfile_workers()
    assert set(workers) == {"worker", "webhooks"}
    assert len({port for _, port in workers.values()}) == len(workers)  # no port shared
    ports = {}
    for name, (queues, _) in workers.items():
        ports[name] = free_port()  # the Procfile's ports may be taken on a shared machine
        stack.start_worker(concurrency=2, name=name, metrics_port=ports[name], queues=queues)
    stack.start_beat()  # sweeps webhooks every 2 s: tasks of the webhooks queue
    account_id, campaign_id = start_campaign(stack, 4, account_cap=2, max_attempts=1)
    wait_finished(stack, account_id, campaign_id)
    created = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)["calls_created"]
    dials = scrape(f"http://127.0.0.1:{ports['worker']}/metrics")
    assert value(dials, "dialer_tasks_total", task=PLACE_CALL, state="succeeded") == created
    assert value(dials, "dialer_tasks_total", task=SWEEP_WEBHOOKS, state="succeeded") == 0

    def swept() -> float:
        hooks = scrape(f"http://127.0.0.1:{ports['webhooks']}/metrics")
        assert value(hooks, "dialer_tasks_total", task=PLACE_CALL, state="started") == 0
        return value(hooks, "dialer_tasks_total", task=SWEEP_WEBHOOKS, state="succeeded")

    wait_until(lambda: swept() >= 1, 20, "a webhook sweep on the webhooks worker's metrics")


def test_worker_and_api_metrics_and_json_logs_after_a_small_campaign(stack: Stack) -> None:
    account_id, campaign_id = start_campaign(
        stack, 8, account_cap=4, max_concurrency=3, max_attempts=1
    )
    # Running but not dialled yet (no worker): the pool's caps, no lease in use.
    api = scrape(f"{stack.api_url}/metrics")
    assert value(api, "dialer_pool_cap", scope="campaign", id=campaign_id, account_id=account_id)
    assert value(api, "dialer_pool_cap", scope="account", id=account_id, account_id=account_id)
    assert (
        value(api, "dialer_pool_cap", scope="campaign", id=campaign_id, account_id=account_id) == 3
    )
    assert value(api, "dialer_pool_cap", scope="account", id=account_id, account_id=account_id) == 4
    assert ("dialer_pool_leases", frozenset({("scope", "campaign"), ("id", str(campaign_id)),
            ("account_id", str(account_id))})) in api  # fmt: skip
    assert total(api, "dialer_pool_leases") == 0
    # Earlier tests on this shared stack may have posted callbacks without a `Timestamp`
    # (stored, no lag): this campaign's are counted from here.
    stored_before = value(api, "dialer_provider_callbacks_total", kind="status", result="stored")
    lags_before = value(api, "dialer_callback_lag_seconds_count", kind="status")

    port = free_port()
    stack.start_worker(concurrency=3, metrics_port=port, loglevel="INFO")
    final = wait_finished(stack, account_id, campaign_id)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    created = stats["calls_created"]
    assert created == final["attempts"]["calls_placed"] == 8

    # The worker's metrics: its pool children's counts, added up by its main process.
    worker = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(worker, "dialer_provider_creates_total", result="created") == created
    assert value(worker, "dialer_dials_total", result="placed") == created
    assert value(worker, "dialer_tasks_total", task=PLACE_CALL, state="succeeded") == created
    assert value(worker, "dialer_dials_dispatched_total") == created
    assert value(worker, "dialer_due_to_dial_seconds_count") == created
    assert value(worker, "dialer_pacer_rounds_total", result="dialled") >= 1
    assert total(worker, "dialer_provider_errors_total") == 0
    assert total(worker, "dialer_breaker_trips_total") == 0

    # The API's: every status callback stored, each with its lag; ingest counted the rows.
    # The stack is shared: an earlier test's calls may still be calling back, and a scrape
    # reads each process's counter and histogram files one after the other, so a callback
    # applied mid-scrape shows in one figure and not yet in the other. The two are compared
    # on a scrape that agrees with the one before it (no callback in between).
    scrapes = [scrape(f"{stack.api_url}/metrics")]

    def figures(samples: Samples) -> tuple[float, float]:
        stored = value(samples, "dialer_provider_callbacks_total", kind="status", result="stored")
        return stored, value(samples, "dialer_callback_lag_seconds_count", kind="status")

    def settled() -> bool:
        scrapes.append(scrape(f"{stack.api_url}/metrics"))
        return figures(scrapes[-2]) == figures(scrapes[-1])

    wait_until(settled, timeout_s=30.0, what="no status callback between two scrapes")
    api = scrapes[-1]
    stored = value(api, "dialer_provider_callbacks_total", kind="status", result="stored")
    assert stored - stored_before >= created  # at least the final callback of every call
    lags = value(api, "dialer_callback_lag_seconds_count", kind="status")
    assert lags - lags_before == stored - stored_before
    assert value(api, "dialer_ingest_rows_total", result="accepted") >= 8
    assert total(api, "dialer_pool_leases") == 0  # the campaign is over: nothing held

    # A place_call for an attempt that is gone: its warning carries every id bound.
    app.send_task(
        PLACE_CALL, kwargs={"attempt_id": 10**9, "campaign_id": campaign_id, "account_id": 77}
    )
    log = stack.log_dir / "worker-w0.log"

    def not_found() -> list[dict[str, Any]]:
        return [e for e in log_lines(log) if e["event"] == "task_target_not_found"]

    wait_until(lambda: bool(not_found()), 20, "the not-found warning in the worker's log")
    line = not_found()[0]
    assert line["level"] == "warning"
    assert line["attempt_id"] == 10**9
    assert line["campaign_id"] == campaign_id
    assert line["account_id"] == 77
    assert line["task_name"] == PLACE_CALL
    assert isinstance(line["task_id"], str) and line["task_id"]
    assert line["code"] == "attempt_not_found"
    assert line["timestamp"].endswith("Z")

    # Celery's own lines come through the same renderer, once, at their own level.
    text = log.read_text()
    assert not re.search(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL)/(MainProcess|ForkPoolWorker)", text)
    lines = log_lines(log)
    succeeded = [
        e for e in lines if e.get("logger") == "celery.app.trace" and "succeeded" in e["event"]
    ]
    assert succeeded and all(e["level"] == "info" for e in succeeded)
    serving = [e for e in lines if e["event"] == "worker_metrics_serving"]
    assert [(e["host"], e["port"]) for e in serving] == [("127.0.0.1", port)]  # loopback


def test_flower_lists_the_dialer_tasks_with_their_ids_only_with_credentials(
    stack: Stack,
) -> None:
    password = "flower-test-4b1f9c"
    port = free_port()
    env = {**stack.env, "FLOWER_USER": "ops", "FLOWER_PASSWORD": password}
    flower = stack.stack.enter_context(
        child(
            [sys.executable, "-m", "dialer", "flower", "--port", str(port)],
            env,
            stack.log_dir / "flower.log",
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthcheck", flower, "Flower")
    # `dialer flower` handed the credentials over in the environment, not in argv.
    argv = Path(f"/proc/{flower.pid}/cmdline").read_bytes().split(b"\0")
    assert b"flower" in argv
    assert not any(password.encode() in arg for arg in argv)

    stack.start_worker(concurrency=2)
    account_id, campaign_id = start_campaign(stack, 2, max_attempts=1)
    wait_finished(stack, account_id, campaign_id)

    auth = ("ops", password)

    def place_calls() -> list[dict[str, Any]]:
        response = httpx.get(
            f"{url}/api/tasks", params={"taskname": PLACE_CALL}, auth=auth, timeout=10
        )
        response.raise_for_status()
        return [t for t in response.json().values() if t["state"] == "SUCCESS"]

    wait_until(lambda: len(place_calls()) == 2, 30, "Flower to see both place_call tasks")
    for task in place_calls():
        kwargs = task["kwargs"]
        assert f"'campaign_id': {campaign_id}" in kwargs
        assert f"'account_id': {account_id}" in kwargs
        assert "'attempt_id': " in kwargs
    pacer = httpx.get(
        f"{url}/api/tasks", params={"taskname": "dialer.pacer"}, auth=auth, timeout=10
    ).json()
    assert any(f"'account_id': {account_id}" in t["kwargs"] for t in pacer.values())

    assert httpx.get(f"{url}/api/tasks", timeout=10).status_code == 401
    assert httpx.get(f"{url}/api/tasks", auth=("ops", "wrong"), timeout=10).status_code == 401
