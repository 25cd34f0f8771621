"""The list's filters, parsed once from a query string and used three ways: for the
registry's ``search()``, to test a live event against what a browser is looking at, and
to build links that keep the filters."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from gateway.registry.base import STATES, epoch, is_overdue
from normalizer.schema import URGENCIES

KINDS = ("new", "follow_up", "repeat", "automatic")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_CHANNEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})?$")


class FilterError(ValueError):
    """One or more filter values are not valid; ``problems`` maps field to the reason."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Filters:
    """What an operator asked to see. ``since``/``until`` are as typed (date or instant);
    ``since_utc``/``until_utc`` the instants they mean."""

    channel: str = ""
    urgency: str = ""
    state: str = ""
    language: str = ""
    kind: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    customer_id: str = ""
    #: "1": only registrations whose acknowledgement was given up on (the number did not reach the customer)
    undelivered: str = ""
    #: "1": only messages whose current deadline has passed (the list's red ones)
    overdue: str = ""
    before: str = ""
    since_utc: str = ""
    until_utc: str = ""

    # -- parsing ------------------------------------------------------------------------
    @classmethod
    def parse(cls, query: Mapping[str, str], tz: str) -> Filters:
        problems: dict[str, str] = {}
        get = lambda name: (query.get(name) or "").strip()
        values: dict[str, str] = {}
        checks: dict[str, tuple[Any, str]] = {
            "channel": (_CHANNEL.match, "letters, digits, _ . -"),
            "urgency": (lambda v: v in URGENCIES, " | ".join(URGENCIES)),
            "state": (lambda v: v in STATES, " | ".join(STATES)),
            "language": (_LANG.match, "a language code such as ru"),
            "kind": (lambda v: v in KINDS, " | ".join(KINDS)),
            "customer_id": (_ID.match, "an id"),
            "undelivered": (lambda v: v == "1", "1"),
            "overdue": (lambda v: v == "1", "1"),
            "before": (_ID.match, "a complaint id"),
        }
        for name, (ok, expected) in checks.items():
            value = get(name)
            if value and not ok(value):
                problems[name] = f"expected {expected}"
            values[name] = value
        q = get("q")
        if len(q) > 200:
            problems["q"] = "at most 200 characters"
        since_utc = until_utc = ""
        zone = ZoneInfo(tz)
        for name in ("since", "until"):
            value = get(name)
            values[name] = value
            if not value:
                continue
            try:
                instant = _instant(value, zone, end_of_day=name == "until")
            except ValueError:
                problems[name] = "expected a date (2026-01-31) or an ISO 8601 instant"
                continue
            if name == "since":
                since_utc = instant
            else:
                until_utc = instant
        if problems:
            raise FilterError(problems)
        return cls(q=q, since_utc=since_utc, until_utc=until_utc, **values)

    # -- using --------------------------------------------------------------------------
    def search_kwargs(self, *, with_channel: bool = True, with_before: bool = True) -> dict[str, Any]:
        return {
            "channel": (self.channel or None) if with_channel else None,
            "urgency": self.urgency or None, "state": self.state or None, "language": self.language or None,
            "kind": self.kind or None, "since": self.since_utc or None, "until": self.until_utc or None,
            "text": self.q or None, "customer_id": self.customer_id or None, "undelivered": self.undelivered == "1",
            "overdue": self.overdue == "1",
            "before": (self.before or None) if with_before else None,
        }

    def matches(self, complaint: dict[str, Any], kind: str, state: str | None) -> bool:
        """Whether a message (as a dict) would be in the list with these filters; the same
        rules as ``Registry.search``."""
        customer = complaint.get("customer") or {}
        if self.undelivered:  # a message on its way in has not been given up on yet
            return False
        if self.channel and complaint.get("channel") != self.channel:
            return False
        if self.urgency and complaint.get("urgency") != self.urgency:
            return False
        if self.language and complaint.get("language") != self.language:
            return False
        if self.kind and kind != self.kind or self.state and state != self.state:
            return False
        if self.overdue and (kind == "automatic" or
                             not is_overdue(complaint.get("deadlines") or {}, state, datetime.now(UTC).timestamp())):
            return False
        if self.customer_id and customer.get("customer_id") != self.customer_id:
            return False
        if self.since_utc or self.until_utc:
            try:
                received = epoch(complaint.get("received_at") or "")
            except ValueError:  # no time of receipt: in no range
                return False
            if self.since_utc and received < epoch(self.since_utc) or self.until_utc and received >= epoch(self.until_utc):
                return False
        if self.q:
            haystack = f"{complaint.get('subject') or ''}\n{complaint.get('text') or ''}\n{customer.get('name') or ''}"
            if self.q.casefold() not in haystack.casefold():
                return False
        return True

    def query(self, **changes: str) -> str:
        """The filters as a query string (without ``before`` unless changed)."""
        current = replace(self, before="", **changes) if "before" not in changes else replace(self, **changes)
        names = [f.name for f in fields(self) if not f.name.endswith("_utc")]
        return urlencode([(n, getattr(current, n)) for n in names if getattr(current, n)])

    def query_with(self, **changes: str) -> str:
        return self.query(**changes)


def _instant(value: str, zone: ZoneInfo, end_of_day: bool) -> str:
    """A date means the start of that day in ``zone`` (``until``: the start of the next
    day, so the day is included); an instant without offset is read in ``zone``."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        day = date.fromisoformat(value) + (timedelta(days=1) if end_of_day else timedelta())
        moment = datetime.combine(day, time(), zone)
    else:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
