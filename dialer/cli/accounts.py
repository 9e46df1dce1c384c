"""`dialer accounts`: create an account, change its caps and webhook URL, show it."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from campaigns.accounts import (
    DEFAULT_CPS,
    DEFAULT_MAX_CONCURRENCY,
    AccountChange,
    account_json,
    create_account,
    default_ceilings,
    get_account,
    update_account,
)
from campaigns.options import FrequencyCaps
from campaigns.webhooks import webhook_secret
from dialer.cli.common import JsonOpt, console, errors_reported, plain, print_json
from dialer.errors import InvalidOptionError
from dialer.settings import ProviderKind, get_settings
from models import transaction

app = typer.Typer(help="Accounts: caps, their ceilings and webhook URL.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Account name.")]
ConcurrencyOpt = Annotated[
    int | None, typer.Option("--max-concurrency", help="Most calls live at once.")
]
CpsOpt = Annotated[float | None, typer.Option("--cps", help="Calls per second.")]


@app.command("create")
def create(
    name: NameArg,
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", help="Most calls live at once.")
    ] = DEFAULT_MAX_CONCURRENCY,
    cps: Annotated[float, typer.Option("--cps", help="Calls per second.")] = DEFAULT_CPS,
) -> None:
    """Create an account. With the simulator as provider its first caller ID is Twilio's
    magic test number +15005550006; with Twilio, add one with `dialer numbers add`."""
    settings = get_settings()
    with errors_reported(), transaction(settings.database_url) as session:
        update_account(
            session,
            create_account(session, name, simulator=settings.provider is ProviderKind.SIMULATOR),
            AccountChange(max_concurrency=max_concurrency, cps=cps),
            allow_private=settings.webhook_allow_private_networks,
            defaults=default_ceilings(settings),
        )
    console.print(f"account {name} created")


@app.command("set")
def set_(
    name: NameArg,
    max_concurrency: ConcurrencyOpt = None,
    cps: CpsOpt = None,
    frequency_cap: Annotated[
        list[str] | None,
        typer.Option(
            "--frequency-cap",
            help="A rolling per-number limit CALLS/DAYS (3/30: at most 3 calls to one number "
            "in any 30 days), across the account's campaigns and single calls; repeatable, "
            "the given ones replace the account's.",
        ),
    ] = None,
    no_frequency_caps: Annotated[
        bool, typer.Option("--no-frequency-caps", help="Remove every frequency cap.")
    ] = False,
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help='Where call events are posted ("" to stop).'),
    ] = None,
    max_concurrency_ceiling: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency-ceiling",
            help="Most the account (its API keys) may raise --max-concurrency to.",
        ),
    ] = None,
    cps_ceiling: Annotated[
        float | None,
        typer.Option("--cps-ceiling", help="Most the account may raise --cps to."),
    ] = None,
    rest_flagged_numbers: Annotated[
        bool | None,
        typer.Option(
            "--rest-flagged-numbers/--no-rest-flagged-numbers",
            help="Rest a caller ID automatically when the number-health report flags it.",
        ),
    ] = None,
) -> None:
    """Change an account's caps, their ceilings or webhook URL. The ceilings bound what the
    account may set through the API (default: ACCOUNT_MAX_CONCURRENCY_CEILING,
    ACCOUNT_CPS_CEILING); a ceiling lowered below a cap lowers the cap."""
    settings = get_settings()
    with errors_reported(), transaction(settings.database_url) as session:
        caps = None
        if frequency_cap and no_frequency_caps:
            raise InvalidOptionError(
                "--frequency-cap and --no-frequency-caps: give one",
                [{"field": "frequency_caps", "message": "both given"}],
            )
        if frequency_cap or no_frequency_caps:
            caps = FrequencyCaps(caps=[] if no_frequency_caps else list(frequency_cap or []))
        change = AccountChange(
            max_concurrency,
            cps,
            caps,
            webhook_url,
            max_concurrency_ceiling,
            cps_ceiling,
            rest_flagged_numbers,
        )
        update_account(
            session,
            get_account(session, name, lock=True),
            change,
            allow_private=settings.webhook_allow_private_networks,
            defaults=default_ceilings(settings),
        )
    console.print(f"account {name} updated")


@app.command("show")
def show(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show an account: caps and their ceilings, webhook URL, caller IDs."""
    settings = get_settings()
    with errors_reported(), transaction(settings.database_url) as session:
        shown = account_json(session, get_account(session, name), default_ceilings(settings))
    if as_json:
        print_json(shown)
        return
    for key, value in shown.items():
        text = json.dumps(value, default=plain) if isinstance(value, list) else plain(value)
        console.print(f"{key}: {text}", markup=False, highlight=False, soft_wrap=True)


@app.command("webhook-secret")
def webhook_secret_command(
    name: Annotated[str, typer.Argument(help="Account name.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new one; the old one signs for 24 h more.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the secret the account's webhooks are signed with (`{"secret"}` with --json)."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        secret = webhook_secret(session, name, rotate=rotate)
    if as_json:
        print_json({"secret": secret})
    else:
        sys.stdout.write(secret + "\n")
