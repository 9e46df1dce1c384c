"""The campaign settings schema: bounds refused with the product's codes."""

from __future__ import annotations

from functools import partial
from typing import Any, get_args

import pytest

from campaigns.options import (
    CampaignOptions,
    OperatorOptions,
    RetryOutcome,
    ScheduleOptions,
    changed_menu,
    read_menu,
)
from dialer.calls import DEFAULT_RETRY_POLICY
from dialer.errors import DialerError, InvalidMenuError, InvalidOptionError
from dialer.menu import MenuAction
from dialer.providers.twiml import TemplateError
from models import MachineAction


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"name": "  "}, "name"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"cps": 0}, "cps"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_hold_s": -1}, "max_hold_s"),
        ({"max_concurrency": "many"}, "max_concurrency"),
        ({"machine_action": "shout"}, "machine_action"),
        ({"default_region": "USA"}, "default_region"),
        ({"dial_retries": -1}, "dial_retries"),
        ({"ring_timeout_s": "x"}, "ring_timeout_s"),
        ({"ring_timeout_s": 4}, "ring_timeout_s"),
        ({"ring_timeout_s": 601}, "ring_timeout_s"),
        ({"time_limit_s": 0}, "time_limit_s"),
        ({"time_limit_s": 14401}, "time_limit_s"),
        ({"max_hold_seconds": 30}, "max_hold_seconds"),
    ],
)
def test_a_setting_out_of_bounds_is_invalid_option(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        CampaignOptions(**{"name": "March", "message": "Hi.", **values})
    assert caught.value.code == "invalid_option"
    assert caught.value.http_status == 400
    assert caught.value.details
    assert [d["field"] for d in caught.value.details] == [field]
    assert field in caught.value.message


def test_every_problem_is_a_detail() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        OperatorOptions(name="", message="Hi.", max_concurrency=0, cps=-1)
    assert caught.value.details is not None
    assert {d["field"] for d in caught.value.details} == {"name", "max_concurrency", "cps"}


def test_a_malformed_message_is_invalid_template() -> None:
    with pytest.raises(TemplateError) as caught:
        CampaignOptions(name="March", message="Hi {0}")
    assert isinstance(caught.value, DialerError)
    assert caught.value.code == "invalid_template"


def test_defaults_and_internal_settings() -> None:
    options = CampaignOptions(
        name="March", message="Hi.", max_hold_s=45, machine_action="leave_message"
    )
    assert options.max_hold_s == 45
    assert options.machine_action is MachineAction.LEAVE_MESSAGE
    assert (options.max_concurrency, options.max_attempts, options.cps) == (10, 3, None)
    assert (options.ring_timeout_s, options.time_limit_s, options.dial_retries) == (30, 600, 3)
    assert options.retry_matrix() == {
        "busy": {"retry": True, "delay_s": 600},
        "no-answer": {"retry": True, "delay_s": 3600},
        "failed": {"retry": True, "delay_s": 600},
        "machine": {"retry": False, "delay_s": 3600},
    }


def test_operator_settings_are_a_subset_of_the_campaigns() -> None:
    operator = set(OperatorOptions.model_fields)
    internal = set(CampaignOptions.model_fields) - operator
    assert {"max_hold_s", "machine_action", "from_number", "name"} <= operator
    assert {"ring_timeout_s", "time_limit_s", "retry_policy"} <= operator
    assert internal == {"dial_retries", "allow_premium", "allowed_countries"}
    assert all(field.description for field in CampaignOptions.model_fields.values())
    assert all(field.description for field in ScheduleOptions.model_fields.values())


@pytest.mark.parametrize("schema", [OperatorOptions, ScheduleOptions])
@pytest.mark.parametrize(
    "internal",
    [
        {"allow_premium": True},
        {"allowed_countries": ["GB"]},
        {"dial_retries": 9},
        {"retry_delay_scale": 0.001},
        {"max_concurency": 2},
    ],
)
def test_internal_and_unknown_settings_are_refused_to_operators(
    schema: type[OperatorOptions | ScheduleOptions], internal: dict[str, Any]
) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        schema(**{"name": "March", "message": "Hi.", **internal})
    field = next(iter(internal))
    assert caught.value.details is not None
    assert {"field": field, "message": "not a setting"} in caught.value.details


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"answered": {"retry": True, "delay_s": 600}}, "retry_policy"),
        ({"hold_cap": {"retry": True, "delay_s": 600}}, "retry_policy"),
        ({"busy": {"retry": True, "delay_s": "x"}}, "retry_policy.busy.delay_s"),
        ({"busy": {"retry": True, "delay_s": 59}}, "retry_policy.busy.delay_s"),
        ({"busy": {"retry": True, "delay_s": 604801}}, "retry_policy.busy.delay_s"),
        ({"busy": {"retry": True}}, "retry_policy.busy.delay_s"),
        ({"busy": {"retry": True, "delay_s": 600, "jitter": 1}}, "retry_policy.busy.jitter"),
        ('{"busy": ', "retry_policy"),
    ],
)
def test_the_retry_matrix_is_typed_and_an_answered_call_never_retries(
    policy: Any, field: str
) -> None:
    with pytest.raises(DialerError) as caught:
        OperatorOptions(name="March", message="Hi.", retry_policy=policy)
    assert caught.value.code == "invalid_option"
    assert caught.value.details is not None
    assert [d["field"] for d in caught.value.details] == [field]


def test_the_retry_outcomes_are_the_defaults_keys() -> None:
    assert set(get_args(RetryOutcome)) == set(DEFAULT_RETRY_POLICY)


def test_the_retry_matrix_is_stored_over_the_defaults() -> None:
    given = CampaignOptions(
        name="March", message="Hi.", retry_policy='{"busy": {"retry": false, "delay_s": 60}}'
    )
    matrix = given.retry_matrix()
    assert matrix["busy"] == {"retry": False, "delay_s": 60}
    assert matrix["no-answer"] == {"retry": True, "delay_s": 3600}


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
def test_a_blank_message_is_refused(message: str) -> None:
    for build in (partial(OperatorOptions, name="March"), ScheduleOptions):
        with pytest.raises(InvalidOptionError) as caught:
            build(message=message)
        assert caught.value.details is not None
        assert [d["field"] for d in caught.value.details] == ["message"]


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"window": "07:00-20:00"}, "window_outside_legal_hours"),
        ({"window": "09:00-21:30"}, "window_outside_legal_hours"),
        ({"window": "9am-5pm"}, "invalid_window"),
        ({"window": "18:00-09:00"}, "invalid_window"),
        ({"days": "weekdays"}, "invalid_days"),
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"start_at": "2027-01-15T09:00:00"}, "invalid_schedule"),
        (
            {"start_at": "2027-01-15T09:00:00Z", "end_at": "2027-01-15T08:00:00Z"},
            "invalid_schedule",
        ),
    ],
)
def test_a_bad_window_setting_has_its_own_code(values: dict[str, Any], code: str) -> None:
    with pytest.raises(DialerError) as caught:
        OperatorOptions(**{"name": "March", "message": "Hi.", **values})
    assert caught.value.code == code
    assert caught.value.http_status == 400


def test_window_settings() -> None:
    from datetime import UTC, date, datetime, time
    from zoneinfo import ZoneInfo

    options = OperatorOptions(
        name="March",
        message="Hi.",
        window="10:00-18:30",
        days="mon-fri",
        holiday=["2027-12-24", "2027-12-31"],
        skip_public_holidays=True,
        timezone="Europe/London",
        start_at="2027-06-01T09:00:00",
        end_at="2027-06-02T17:00:00+00:00",
    )
    window = options.calling_window()
    assert (window.start, window.end) == (time(10), time(18, 30))
    assert window.days == frozenset(range(5))
    assert window.holidays == {date(2027, 12, 24), date(2027, 12, 31)}
    assert window.skip_public_holidays
    # Without an offset, in the campaign's zone (BST in June: 08:00 UTC).
    assert options.start_at == datetime(2027, 6, 1, 9, tzinfo=ZoneInfo("Europe/London"))
    assert options.start_at.astimezone(UTC).hour == 8
    assert options.end_at == datetime(2027, 6, 2, 17, tzinfo=UTC)
    default = OperatorOptions(name="March", message="Hi.").calling_window()
    assert (default.start, default.end, default.days) == (time(9), time(20), frozenset(range(7)))


def test_a_campaign_without_a_message_is_missing_field() -> None:
    with pytest.raises(DialerError) as caught:
        CampaignOptions(name="March", max_concurrency=0)
    assert caught.value.code == "missing_field"
    assert caught.value.details == [{"field": "message", "message": "Field required"}]


def test_column_map_entries_are_column_equals_variable() -> None:
    options = CampaignOptions(
        name="March", message="Hi.", column_map=[" Appt Date = appointment_time", "Tel=phone"]
    )
    assert options.columns() == {"Appt Date": "appointment_time", "Tel": "phone"}
    with pytest.raises(InvalidOptionError) as caught:
        CampaignOptions(name="March", message="Hi.", column_map=["Appt Date"])
    assert caught.value.details is not None
    assert [d["field"] for d in caught.value.details] == ["column_map"]


def _menu(**settings: Any) -> Any:
    return CampaignOptions(name="n", message="Hi.", **settings).call_menu()


def test_a_menu_change_keeps_the_keys_and_words_it_leaves_out() -> None:
    """`changed_menu` reads the campaign's keys and opt-out line back from the stored
    menu (each key's own words included) and applies only what the change gives."""
    current = _menu(
        menu={"1": {"action": "confirm", "say": "Say yes with {digit}."}, "2": "cancel"},
        opt_out_digit="8",
        opt_out_prompt="Stop with {digit}.",
    )
    moved = changed_menu(current, {"opt_out_digit": "0"})
    assert moved is not None
    assert moved.prompt == "Say yes with 1. To cancel, press 2. Stop with 0."
    assert moved.words == {"1": "Say yes with {digit}.", "0": "Stop with {digit}."}
    off = changed_menu(current, {"opt_out_line": False})
    assert off is not None and list(off.actions) == ["1", "2"]
    assert changed_menu(off, {"opt_out_line": True}).prompt.endswith(  # type: ignore[union-attr]
        "To stop these calls, press 9."
    )  # a line turned on again that had been off: the defaults
    keys = changed_menu(current, {"menu": read_menu({"3": "repeat"})})
    assert keys is not None and keys.actions == {
        "3": (MenuAction.REPEAT, None),
        "8": (MenuAction.OPT_OUT, None),
    }
    assert changed_menu(current, {"menu": None, "opt_out_line": False}) is None
    with pytest.raises(InvalidMenuError):
        changed_menu(current, {"menu": read_menu({"8": "confirm"})})  # the line's key
    # Several opt-out keys of the menu's own are keys, not a line: they all stay.
    several = _menu(menu={"1": "opt_out", "2": "opt_out"}, opt_out_line=False)
    kept = changed_menu(several, {"opt_out_prompt": "Bye: {digit}."})
    assert kept is not None and list(kept.actions) == ["1", "2"]
