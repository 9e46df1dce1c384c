"""The long-running commands: the carrier simulator, the HTTP API, Flower, and the demo."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from dialer.cli.common import JsonOpt, console, err_console, errors_reported, fail, print_json
from dialer.logs import set_level
from dialer.settings import get_settings

if TYPE_CHECKING:
    import uvicorn

log = structlog.get_logger(__name__)

app = typer.Typer()
"""Added to the root app without a name: its commands are top level (`dialer simulator`)."""


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    time_scale: Annotated[float, typer.Option(help="0.01 makes a 60 s call last 0.6 s.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed for outcomes and faults.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=P, e.g. 502-after=0.05 (repeatable); NAME one of 502-before, "
            "502-after, 429, slow, slow-before, callback-lost, callback-duplicate, "
            "callback-reorder (see docs/concepts/guarantees.md)."
        ),
    ] = None,
    cps_limit: Annotated[float | None, typer.Option(help="Account calls per second.")] = None,
    concurrency_limit: Annotated[int | None, typer.Option(help="Most live calls.")] = None,
) -> None:
    """Run the Twilio-compatible carrier simulator."""
    from dialer.simulator.config import SimulatorConfig, parse_faults
    from dialer.simulator.runner import uvicorn_config

    settings = get_settings()
    try:
        faults = parse_faults(fault or [])
    except ValueError as error:
        fail("invalid_fault", str(error))
    config = SimulatorConfig(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        time_scale=time_scale,
        seed=seed,
        faults=faults,
        cps_limit=cps_limit,
        concurrency_limit=concurrency_limit,
    )
    _serve(uvicorn_config(config, host, port), "simulator")


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5555,
    address: Annotated[
        str,
        typer.Option(help="Address to listen on (0.0.0.0: every interface, e.g. in a container)."),
    ] = "127.0.0.1",
) -> None:
    """Run the Flower dashboard over the workers, behind basic auth (FLOWER_USER,
    FLOWER_PASSWORD; a placeholder password is refused), on this machine only unless
    `--address` says otherwise: it shows every task's arguments. The credentials reach
    Flower in its environment (`FLOWER_BASIC_AUTH`), never on its command line, which `ps`
    shows."""
    settings = get_settings()
    if settings.flower_password is None or not settings.flower_password.get_secret_value():
        fail("flower_password_unset", "set FLOWER_PASSWORD: Flower shows every task's arguments")
    auth = f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    if "," in auth:
        fail("flower_password_invalid", "FLOWER_USER and FLOWER_PASSWORD may not contain ','")
    env = {**os.environ, "FLOWER_BASIC_AUTH": auth}
    args = ["-m", "celery", "-A", "workers", "flower", f"--address={address}", f"--port={port}"]
    os.execve(sys.executable, [sys.executable, *args], env)  # noqa: S606  # Flower replaces us


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API and provider webhooks (uvicorn). Its `/metrics` adds up every
    worker process's: they share this process's metrics directory (`dialer.metrics`)."""
    import uvicorn

    from dialer.metrics import ensure_multiprocess_dir

    ensure_multiprocess_dir()  # before the workers start: they inherit it
    config = uvicorn.Config(
        "dialer.web.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through `dialer.logs`
        access_log=False,
    )
    _serve(config, "api")


def _serve(config: uvicorn.Config, service: str) -> None:
    """Serve `config` until interrupted: bind and listen on its host and port (`0`: a free
    one), log `listening` at INFO with the URL that answers (the real port), then serve in
    this process or, with `config.workers` > 1, in that many uvicorn worker processes that
    share the socket. Connections made before the app has started wait in the socket's
    backlog. The service logs at `LOG_LEVEL` (INFO unless set), not the CLI's WARNING.

    Raises:
        typer.Exit: 3 (uvicorn's startup failure) when the app failed to start.
    """
    from uvicorn import Server
    from uvicorn.supervisors import Multiprocess

    set_level(get_settings().log_level)
    sock = config.bind_socket()
    sock.listen(config.backlog)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    log.info("listening", service=service, url=url, workers=config.workers)
    if config.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
        return
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(3)


@app.command()
def demo(
    contacts: Annotated[int | None, typer.Option(help="Generate N contacts.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Contacts CSV.", exists=True)] = None,
    time_scale: Annotated[float, typer.Option(help="Simulated time scale.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    max_concurrency: Annotated[int, typer.Option(help="Pool cap.")] = 20,
    cps: Annotated[float, typer.Option(help="Calls per second.")] = 20.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts per contact.")] = 3,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Simulator fault NAME=P (repeatable; names as `dialer simulator`)."),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Print the campaign page's URL and a key to sign in with, and keep the "
            "stack up after the report until Ctrl-C (SESSION_SECRET made for the run if unset).",
        ),
    ] = False,
    hosts: Annotated[
        int,
        typer.Option(
            min=1,
            max=9,
            help="Hosts to run the stack on, each behind its own fault proxy (with --chaos).",
        ),
    ] = 1,
    chaos: Annotated[
        bool,
        typer.Option(
            "--chaos",
            help="Cut the pacer's host off mid-campaign past the pacer lock's TTL, heal it, "
            "and print the promises as the carrier sees them (needs --hosts 2 or more).",
        ),
    ] = False,
    broker: Annotated[
        str,
        typer.Option(help="Celery's broker: redis, or rabbitmq (CELERY_BROKER_URL or local)."),
    ] = "redis",
    sentinel: Annotated[
        bool,
        typer.Option(
            "--sentinel",
            help="With --chaos: Redis as a master, two replicas and three Sentinels, the "
            "master killed after the partition.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a whole campaign through the simulator with real workers, then report; with
    `--serve`, then keep serving its campaign page until Ctrl-C; with `--hosts N --chaos`,
    across N hosts with a partition in the middle."""
    # Imported here: the demo starts Celery and the other parts, which no other command needs.
    from dialer.cli.chaos_demo import run_chaos_demo
    from dialer.cli.demo import DemoOptions, run_demo
    from dialer.cli.devstack import StackStopped
    from dialer.simulator.config import parse_faults

    try:
        parse_faults(fault or [])  # refuse a bad fault here, not as a simulator that died
    except ValueError as error:
        fail("invalid_fault", str(error))
    if chaos != (hosts > 1) or broker not in ("redis", "rabbitmq"):
        fail(
            "invalid_demo_options",
            "--chaos runs with --hosts 2 or more, and --hosts with --chaos; "
            "--broker is redis or rabbitmq",
        )
    if (chaos and serve) or ((broker != "redis" or sentinel) and not chaos):
        fail(
            "invalid_demo_options",
            "--chaos does not run with --serve; --broker and --sentinel need --chaos",
        )
    options = DemoOptions(
        contacts=contacts,
        csv=csv,
        time_scale=time_scale,
        seed=seed,
        max_concurrency=max_concurrency,
        cps=cps,
        max_attempts=max_attempts,
        faults=fault or [],
        as_json=as_json,
        serve=serve,
        hosts=hosts,
        chaos=chaos,
        broker=broker,
        sentinel=sentinel,
    )
    try:
        with errors_reported():
            out = console if not as_json else err_console
            result = run_chaos_demo(options, out) if chaos else run_demo(options, out)
    except StackStopped as stopped:
        # Every child is stopped; now end as the signal would have, for whoever waits on us.
        signal.signal(stopped.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stopped.signum)
        raise
    if as_json:
        print_json(result)
    if result.get("violations"):
        fail("invariant_broken", "; ".join(result["violations"]))
