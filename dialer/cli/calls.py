"""`dialer calls`: place one call, show one, cancel one, list them."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any

import typer
from rich.table import Table

from campaigns import calls
from dialer.cli.common import (
    AccountOpt,
    JsonOpt,
    account_id,
    cli_actor,
    console,
    errors_reported,
    fail,
    print_json,
)
from dialer.runtime import get_runtime
from dialer.settings import get_settings
from models import Account, EndReason, Outcome, on_commit, transaction, utcnow

app = typer.Typer(help="Single calls.", no_args_is_help=True)

PairsOpt = Annotated[list[str] | None, typer.Option(help="NAME=VALUE, repeatable.")]


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail("invalid_option", f"{option} {item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value
    return pairs


@app.command("place")
def place(
    to: Annotated[str, typer.Option("--to", help="Callee, E.164 (+447386172392).")],
    message: Annotated[
        str | None, typer.Option(help="Spoken text with {name} placeholders.")
    ] = None,
    var: PairsOpt = None,
    from_number: Annotated[str | None, typer.Option("--from", help="Caller ID, E.164.")] = None,
    caller_id_pool: Annotated[
        list[str] | None,
        typer.Option(
            "--caller-id-pool",
            help="A caller-ID pool instead of --from (repeatable): the account's numbers, E.164.",
        ),
    ] = None,
    amd: Annotated[calls.Amd | None, typer.Option(help="Answering machine detection.")] = None,
    ring_timeout: Annotated[int | None, typer.Option(help="Seconds it may ring.")] = None,
    time_limit: Annotated[int | None, typer.Option(help="Longest call, seconds.")] = None,
    max_hold_seconds: Annotated[int | None, typer.Option(help="Hang up after, seconds.")] = None,
    meta: PairsOpt = None,
    webhook_url: Annotated[str | None, typer.Option(help="Where this call's events go.")] = None,
    call_at: Annotated[
        datetime | None,
        typer.Option(help="Not before (ISO 8601 with offset).", formats=["%Y-%m-%dT%H:%M:%S%z"]),
    ] = None,
    campaign_id: Annotated[int | None, typer.Option(help="Count it in this campaign.")] = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Queue one call (as `POST /v1/calls`); print its id, or the call with --json."""
    # Imported here: sending a task loads Celery, which the other commands do not need.
    from workers.enqueue import kick_pacer

    settings = get_settings()
    with errors_reported(), transaction(settings.database_url) as session:
        # The API's schema: the same bounds (ring timeout 5-600 s, hold > 0, ...).
        call = calls.SingleCall(
            to_number=to,
            message=message,
            variables=_pairs(var, "--var"),
            from_number=from_number,
            caller_id_pool=caller_id_pool,
            amd=amd,
            ring_timeout=ring_timeout,
            time_limit=time_limit,
            max_hold_seconds=max_hold_seconds,
            metadata=_pairs(meta, "--meta"),
            webhook_url=webhook_url,
            call_at=call_at,
            campaign_id=campaign_id,
        )
        owner = session.get_one(Account, account_id(account))
        job = calls.place_call(
            session,
            owner,
            call,
            allow_private_webhooks=settings.webhook_allow_private_networks,
            now=utcnow(),
        )
        shown = calls.calls_json(session, [job], utcnow())[0]
        owner_id = owner.id
        on_commit(session, lambda: kick_pacer(owner_id))
    if as_json:
        print_json(shown)
        return
    console.print(
        f"call {shown['call_id']}: {shown['status']} to {shown['to']} from {shown['from']}"
    )


@app.command("show")
def show(
    call_id: Annotated[int, typer.Argument(help="Call id.")],
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Show a call and its attempts."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        job = calls.get_call(session, account_id(account), call_id)
        shown = calls.calls_json(session, [job], utcnow())[0]
    if as_json:
        print_json(shown)
        return
    for key in (
        "call_id",
        "campaign_id",
        "status",
        "waiting_reason",
        "next_attempt_at",
        "outcome",
        "to",
        "from",
        "metadata",
    ):
        console.print(f"{key}: {shown[key]}", markup=False, highlight=False)
    table = Table("#", "sid", "status", "answered by", "digits", "duration", "error")
    for attempt in shown["attempts"]:
        table.add_row(
            *(
                str(attempt[key] if attempt[key] is not None else "")
                for key in (
                    "attempt_no",
                    "sid",
                    "status",
                    "answered_by",
                    "digits",
                    "duration",
                    "error_code",
                )
            )
        )
    console.print(table)


@app.command("cancel")
def cancel(
    call_id: Annotated[int, typer.Argument(help="Call id (a single call or a contact).")],
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Cancel one call (as `DELETE /v1/calls/{id}`): not yet dialled, it ends canceled at
    once; live, it is hung up at the provider and ends canceled when the provider reports
    the end."""
    from workers.enqueue import hang_up

    runtime = get_runtime()
    with errors_reported(), transaction(runtime.settings.database_url) as session:
        done = calls.cancel_call(session, runtime, account_id(account), call_id, actor=cli_actor())
        if done.hang_up is not None:
            on_commit(session, partial(hang_up, done.hang_up, EndReason.CALL_CANCELED))
        shown = calls.calls_json(session, [done.job], runtime.clock())[0]
    if as_json:
        print_json(shown)
        return
    hanging_up = " (hanging up)" if done.hang_up is not None else ""
    console.print(f"call {call_id}: {shown['status']}{hanging_up}")


@app.command("list")
def list_(
    status: Annotated[calls.CallStatus | None, typer.Option(help="Only in this status.")] = None,
    outcome: Annotated[Outcome | None, typer.Option(help="Only with this outcome.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Only to this number.")] = None,
    campaign_id: Annotated[int | None, typer.Option(help="Only this campaign's.")] = None,
    limit: Annotated[int, typer.Option(help="Calls per page (at most 1000).")] = 100,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """List calls, newest first (with --json: {"items", "next_cursor"}, as the API)."""
    where = calls.CallFilter(campaign_id=campaign_id, status=status, outcome=outcome, to_number=to)
    with errors_reported(), transaction(get_settings().database_url) as session:
        found = calls.list_calls(session, account_id(account), where, limit=limit, cursor=cursor)
        next_cursor = found.next_cursor
        page: dict[str, Any] = {
            "items": calls.calls_json(session, found.items, utcnow()),
            "next_cursor": next_cursor,
        }
    if as_json:
        print_json(page)
        return
    table = Table("id", "campaign", "status", "outcome", "to", "attempts")
    for call in page["items"]:
        table.add_row(
            str(call["call_id"]),
            str(call["campaign_id"]),
            call["status"],
            str(call["outcome"] or ""),
            call["to"],
            str(len(call["attempts"])),
        )
    console.print(table)
    if next_cursor:
        console.print(f"next page: --cursor {next_cursor}")
