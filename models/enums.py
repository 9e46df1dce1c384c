"""Statuses stored in the database. Attempts and contacts (jobs) change status only through
`dialer.calls` (the call state machine), campaigns only through `dialer.campaign_state`."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELED = "canceled"


class JobStatus(StrEnum):
    """A contact's place in the campaign."""

    PENDING = "pending"
    """Waiting for the pacer: due at `next_due_at`."""
    IN_PROGRESS = "in_progress"
    """An attempt holds a lease and is being dialled or is live."""
    DONE = "done"
    """Final: `outcome` says how it ended."""
    CANCELED = "canceled"
    """Final: the campaign was cancelled before the contact was reached."""


class AttemptStatus(StrEnum):
    """One call attempt. The first two are ours; the rest are Twilio's `call_enum_status`."""

    DIALING = "dialing"
    """Lease taken, `place_call` enqueued, no request sent to the provider yet."""
    PLACING = "placing"
    """The create request may have reached the provider: never send it again blindly."""
    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    NOT_PLACED = "not-placed"
    """Final for the attempt without any call: the provider refused or never got the request."""


TERMINAL_ATTEMPT_STATUSES = frozenset(
    {
        AttemptStatus.COMPLETED,
        AttemptStatus.BUSY,
        AttemptStatus.NO_ANSWER,
        AttemptStatus.FAILED,
        AttemptStatus.CANCELED,
        AttemptStatus.NOT_PLACED,
    }
)

LIVE_ATTEMPT_STATUSES = frozenset(set(AttemptStatus) - TERMINAL_ATTEMPT_STATUSES)


class Outcome(StrEnum):
    """How a contact's call ended, as reported per campaign."""

    ANSWERED = "answered"
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    HOLD_CAP = "hold_cap"
    """Hung up by the watchdog: live longer than the campaign's `max_hold_seconds`."""
    REJECTED = "rejected"
    """The provider refused the number (a permanent contact error, e.g. Twilio 21211)."""
    DIAL_ERROR = "dial_error"
    """The call could not be created within the campaign's `dial_retries`."""
    DO_NOT_CALL = "do_not_call"
    """The number was on the DNC list at dial time."""
    ERROR = "error"
    """The dialer itself failed on this contact (a bad template, a bug) on every one of its
    tries; the attempt's `error_message` names the exception."""
    EXPIRED = "expired"
    """Never dialled in time: still pending at the campaign's `end_at` or at the contact's
    `call_before` (the appointment it reminds of has passed)."""


class EndReason(StrEnum):
    """Why the dialer itself ended a call (`CallAttempt.end_reason`)."""

    HOLD_CAP = "hold_cap"
    """Live longer than the campaign's `max_hold_s`: the watchdog hung up."""
    LEASE_EXPIRED = "lease_expired"
    """Its pool lease was about to lapse with the call still live."""
    MACHINE = "machine"
    """AMD found a machine on a campaign that hangs up on machines."""
    LATE_CREATE = "late_create"
    """A call that turned up for an attempt already given up, while the contact had a newer
    attempt: hung up at once (the attempt stays `not-placed`)."""
    CAMPAIGN_CANCELED = "campaign_canceled"
    """Its campaign was cancelled with hang-up."""
    CALL_CANCELED = "call_canceled"
    """The call itself was cancelled (`DELETE /v1/calls/{id}`, `dialer calls cancel`)."""


CANCEL_END_REASONS = frozenset({EndReason.CAMPAIGN_CANCELED, EndReason.CALL_CANCELED})
"""End reasons of a cancel: an attempt marked with one while its call had no sid yet is
hung up the moment the sid arrives."""


class MachineAction(StrEnum):
    """What to do when AMD says a machine answered."""

    HANG_UP = "hang_up"
    LEAVE_MESSAGE = "leave_message"
    CONTINUE = "continue"
    """Record `AnsweredBy` and carry on: the call goes on as if a person answered."""


class WebhookStatus(StrEnum):
    """Where one outbox event (`WebhookEvent`) stands in its delivery."""

    PENDING = "pending"
    """Waiting for its next try at `next_attempt_at` (its first, or a retry)."""
    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    FAILED = "failed"
    """Stopped for good: the receiver answered 410 Gone."""
    DEAD = "dead"
    """Dead-lettered: every try failed (`dialer webhooks retry` sends it again)."""


class ScheduleStatus(StrEnum):
    """A recurring reminder batch (`campaigns.schedules`)."""

    ACTIVE = "active"
    """Fires at each occurrence of its cron expression."""
    PAUSED = "paused"
    """Fires nothing until resumed; occurrences passed meanwhile are not caught up."""
    DELETED = "deleted"
    """Gone for the operator (404); its runs and history stay."""


class ScheduleRunStatus(StrEnum):
    """What one firing of a schedule did."""

    OK = "ok"
    """A campaign was created from the source and started."""
    EMPTY = "empty"
    """The source had no rows (an empty file and nothing pushed): nothing to call."""
    FAILED = "failed"
    """The source could not be read or was refused as a whole (`error_code`); the pushed
    contacts wait for the next run."""
