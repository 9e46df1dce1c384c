"""Keyset pagination for every list the API and the CLI show: a page of at most `limit`
rows in the list's order, and an opaque cursor that names the last row's sort key, so the
next page starts after it whatever was added or removed meanwhile (no OFFSET: a deep page
costs what the first does).

A cursor is URL-safe base64 of `{"l": <list>, "k": [<sort key>]}`: the list's name is in
it, so one list's cursor is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from dialer.errors import DialerError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
"""Rows per page: the default, and the most one page may ask for."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Rows of one page, and the cursor of the next (None: this is the last page)."""

    items: list[T]
    next_cursor: str | None


def _invalid() -> DialerError:
    return DialerError("invalid_cursor", "the cursor is not a `next_cursor` of this list")


def _encode(name: str, key: list[Any]) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps({"l": name, "k": values}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(name: str, cursor: str, order: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as error:
        raise _invalid() from error
    if not isinstance(raw, dict) or raw.get("l") != name:
        raise _invalid()
    values = raw.get("k")
    if not isinstance(values, list) or len(values) != len(order):
        raise _invalid()
    key: list[Any] = []
    for column, value in zip(order, values, strict=True):
        if column.type.python_type is datetime:
            try:
                parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise _invalid()
            key.append(parsed)
        elif (column.type.python_type is str and isinstance(value, str)) or (
            type(value) is int and -(2**63) <= value < 2**63
        ):
            key.append(value)
        else:
            raise _invalid()
    return key


def keyset_page(
    session: Session,
    query: Select[T],
    name: str,
    order: Sequence[InstrumentedAttribute[Any]],
    *,
    descending: bool = False,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[T]:
    """One page of `query`'s rows ordered by the `order` columns (ascending, or all
    descending), ending with a unique one (the id), after the row `cursor` names.
    `limit` None: every row, in one page.

    Raises:
        DialerError: `invalid_cursor` (not a `next_cursor` of list `name`),
            `invalid_option` (`limit` outside 1..`MAX_LIMIT`).
    """
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise DialerError("invalid_option", f"limit must be from 1 to {MAX_LIMIT}")
    if cursor is not None:
        values = _decode(name, cursor, order)
        after = tuple_(*(literal(v, c.type) for c, v in zip(order, values, strict=True)))
        key = tuple_(*order)
        query = query.where(key < after if descending else key > after)
    query = query.order_by(*(c.desc() if descending else c.asc() for c in order))
    if limit is None:
        return Page(list(session.scalars(query)), None)
    rows = list(session.scalars(query.limit(limit + 1)))
    items = rows[:limit]
    more = len(rows) > limit
    return Page(items, _encode(name, [getattr(items[-1], c.key) for c in order]) if more else None)
