"""The registry contract: the only writer of state, and the queue it feeds.

``submit()`` is one atomic step: idempotency, customer identity, follow-up and repeat
detection, registration number, queue event. Both backends (SQLite, Redis) implement this
interface and pass the same contract test suite.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from gateway.config import ConfigError
from gateway.inbound import Receipt
from gateway.registry.fingerprint import fingerprint, max_distance
from normalizer.schema import Complaint

EVENT_KINDS = ("new", "follow_up", "repeat")


def _claim(state: str, assigned: str | None, operator: str) -> tuple[str, str | None]:
    return ("claimed" if state != "closed" else state), operator


#: Operators' actions: each maps (state, assigned_to, operator) to the new pair.
ACTIONS: dict[str, Any] = {
    "claim": _claim,
    "reply": lambda state, assigned, operator: (state, assigned),
    "note": lambda state, assigned, operator: (state, assigned),
    "close": lambda state, assigned, operator: ("closed", assigned),
    "reopen": lambda state, assigned, operator: ("open", None),
    # the gateway's own: an acknowledgement the door gave up on (details: channel, attempts, error)
    "acknowledgement_failed": lambda state, assigned, operator: (state, assigned),
}


#: The states of a registration (what ``ACTIONS`` leave).
STATES = ("open", "claimed", "closed")


class RegistryError(Exception):
    """The backend could not do what was asked (unreachable, corrupt)."""


@dataclass(slots=True)
class RegistrySettings:
    """The backend-independent part of ``registry:`` in config.yaml."""

    number_format: str = "{year}-{seq:06d}"
    timezone: str = "Europe/Moscow"
    repeat_window_days: float = 7.0
    repeat_similarity: float = 0.9
    repeat_candidates: int = 20
    visibility_timeout_seconds: float = 300.0
    #: ``registrations_due`` counts a deadline that passes within this many seconds as due soon.
    due_soon_seconds: float = 3600.0

    @classmethod
    def from_config(cls, registry: dict[str, Any], normalizer: dict[str, Any] | None = None) -> RegistrySettings:
        repeat = registry.get("repeat") or {}
        queue = registry.get("queue") or {}
        defaults = cls()
        number_format = (registry.get("registration_number") or {}).get("format", defaults.number_format)
        try:
            NumberFormat(number_format)
        except ValueError as exc:
            raise ConfigError(f"registry.registration_number.format {number_format!r}: {exc}") from exc
        return cls(
            number_format=number_format,
            timezone=(normalizer or {}).get("timezone", defaults.timezone),
            repeat_window_days=float(repeat.get("window_days", defaults.repeat_window_days)),
            repeat_similarity=float(repeat.get("similarity", defaults.repeat_similarity)),
            repeat_candidates=int(repeat.get("max_candidates", defaults.repeat_candidates)),
            visibility_timeout_seconds=float(queue.get("visibility_timeout_seconds", defaults.visibility_timeout_seconds)),
            due_soon_seconds=float(registry.get("due_soon_minutes", defaults.due_soon_seconds / 60)) * 60,
        )


_SEQ = re.compile(r"\{seq(?::0?(\d+)d)?\}")


@dataclass(slots=True)
class NumberFormat:
    """A registration number format such as ``{year}-{seq:06d}`` or ``C{seq:08d}``.

    ``{year}`` is the year of receipt in the configured time zone; the sequence restarts
    every year when the format contains the year.
    """

    template: str

    def __post_init__(self) -> None:
        if len(_SEQ.findall(self.template)) != 1:
            raise ValueError("registration number format must contain {seq} or {seq:0Nd} exactly once")
        rest = _SEQ.sub("", self.template).replace("{year}", "")
        if "{" in rest or "}" in rest:
            raise ValueError("registration number format may only use {year} and {seq}")
        if any(unicodedata.category(ch) == "Cc" for ch in rest):  # numbers go into answers and e-mail subjects
            raise ValueError("registration number format may not contain control characters (newlines, tabs)")

    @property
    def yearly(self) -> bool:
        return "{year}" in self.template

    def printf(self, year: str) -> str:
        """The format as a printf pattern for one year: ``2026-%06d``."""
        head = self.template.replace("{year}", year).replace("%", "%%")
        match = _SEQ.search(head)
        assert match is not None
        width = match.group(1)
        return head[: match.start()] + (f"%0{width}d" if width else "%d") + head[match.end() :]

    def counter_name(self, year: str) -> str:
        return f"seq:{year}" if self.yearly else "seq"

    def pattern(self) -> re.Pattern[str]:
        """A regex that finds registration numbers of this format in text."""
        escaped = re.escape(self.template)
        escaped = escaped.replace(re.escape("{year}"), r"\d{4}")
        escaped = _SEQ.sub(lambda m: r"\d{%s,}" % (m.group(1) or "1"), escaped.replace("\\{", "{").replace("\\}", "}"))
        return re.compile(r"(?<![\w-])" + escaped + r"(?![\w-])")


@dataclass(slots=True)
class SubmitPlan:
    """What Python computes before the atomic step, so the step itself stays small."""

    complaint: Complaint
    identity_keys: list[str]
    year: str
    printf: str
    counter: str
    received_epoch: float
    simhash: int
    digest: str
    window_seconds: float
    max_distance: int
    candidates: int
    #: The deadline that matters while a new registration is open (``current_deadline``):
    #: its instant (epoch seconds) and name, or None without deadlines.
    due_epoch: float | None = None
    due_name: str | None = None
    #: The instant of the deadline that matters once its registration is claimed
    #: (``due(deadlines, "claimed")``): a follow-up's or a repeat's, when it joins one.
    due_claimed_epoch: float | None = None


def stored_json(text: str | bytes) -> Any:
    """JSON the registry wrote, read back (an event's payload, for every event a consumer
    reads): orjson, three times as fast as ``json`` on a complaint; ``json`` for what orjson
    refuses (``NaN`` or ``Infinity``, which an earlier version's ``json.dumps`` could write)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_plan(complaint: Complaint, settings: RegistrySettings, number_format: NumberFormat) -> SubmitPlan:
    received = datetime.fromisoformat(complaint.received_at.replace("Z", "+00:00"))
    if complaint.received_at.endswith("Z"):  # UTC, as the normaliser writes it
        year = _local_year(complaint.received_at[:16], settings.timezone)
    else:
        year = str(received.astimezone(ZoneInfo(settings.timezone)).year)
    text = complaint.text if complaint.text.strip() else (complaint.subject or "")
    simhash, digest = fingerprint(text, [a.sha256 for a in complaint.attachments])
    due = due_while_open(complaint.deadlines)
    claimed = due_once_claimed(complaint.deadlines)
    return SubmitPlan(
        complaint=complaint,
        identity_keys=[i.key for i in complaint.customer.identities],
        year=year,
        printf=_printf(number_format.template, year),
        counter=number_format.counter_name(year),
        received_epoch=received.timestamp(),
        simhash=simhash,
        digest=digest,
        window_seconds=settings.repeat_window_days * 86400.0,
        max_distance=max_distance(settings.repeat_similarity),
        candidates=settings.repeat_candidates,
        due_epoch=due[0] if due else None,
        due_name=due[1] if due else None,
        due_claimed_epoch=claimed,
    )


@lru_cache(maxsize=256)
def _local_year(utc_minute: str, timezone_name: str) -> str:
    """The year in ``timezone_name`` at a UTC minute (``YYYY-MM-DDTHH:MM``): every zone's
    offset is whole minutes, so a new year never begins inside a minute."""
    return str(datetime.fromisoformat(utc_minute + "+00:00").astimezone(ZoneInfo(timezone_name)).year)


@lru_cache(maxsize=64)
def _printf(template: str, year: str) -> str:
    return NumberFormat(template).printf(year)


@dataclass(slots=True)
class Event:
    """One queue event as a consumer reads it."""

    id: str
    event: str
    registration_number: str | None
    customer_id: str | None
    complaint_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    deliveries: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "registration_number": self.registration_number,
            "customer_id": self.customer_id,
            "complaint_id": self.complaint_id,
            "deliveries": self.deliveries,
            **self.payload,
        }


#: Messages one inbox search looks at before it stops and offers to go on (``inbox.search_scan_limit``).
DEFAULT_SEARCH_SCAN_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of an inbox search. ``next_before`` is where the next page starts (None:
    nothing older matches); ``scan_limited``: the search stopped at its scan limit, so
    older messages were not looked at yet and the next page looks at them."""

    rows: list[dict[str, Any]]
    next_before: str | None
    scan_limited: bool


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def epoch(instant: str) -> float:
    """An ISO 8601 instant (``...Z`` or with an offset) as seconds since the epoch."""
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


def _current(deadlines: dict[str, str], state: str | None) -> tuple[float, str, str] | None:
    """``current_deadline`` with its instant read: ``(epoch, name, instant)``."""
    if state == "closed":
        return None
    dated = []
    for name, at in deadlines.items():
        try:
            dated.append((epoch(at), name, at))
        except (TypeError, ValueError):
            continue
    dated.sort()
    if state in (None, "open"):
        first = next((d for d in dated if d[1] == "acknowledge"), None)
        if first:
            return first
    rest = [d for d in dated if d[1] != "acknowledge"] or dated
    return rest[0] if rest else None


def current_deadline(deadlines: dict[str, str], state: str | None) -> tuple[str, str] | None:
    """The one deadline of a message that matters now, as ``(name, instant)``: none once its
    registration is closed; while open, the first answer's (``acknowledge``); then the
    nearest of the others. Instants that do not parse are left out."""
    current = _current(deadlines, state)
    return (current[1], current[2]) if current else None


def due(deadlines: dict[str, str], state: str | None) -> tuple[float, str] | None:
    """The current deadline (``current_deadline``) as ``(epoch seconds, name)``: what a
    registration's index of deadlines holds for it."""
    current = _current(deadlines, state)
    return (current[0], current[1]) if current else None


def due_while_open(deadlines: dict[str, str]) -> tuple[float, str] | None:
    """``due(deadlines, "open")``, a new registration's: the first answer's deadline read
    alone when it is there (one instant parsed, not every deadline's, for every complaint)."""
    first = deadlines.get("acknowledge")
    if first is not None:
        with contextlib.suppress(TypeError, ValueError):  # one that does not parse: the nearest other, as ``due``
            return epoch(first), "acknowledge"
    return due(deadlines, "open") if deadlines else None


def due_once_claimed(deadlines: dict[str, str]) -> float | None:
    """The instant of ``due(deadlines, "claimed")``: the nearest deadline but the first
    answer's (or the first answer's alone). Instants as the normaliser writes them (UTC,
    ``...Z``, of one length) are in order as text, so only the nearest is parsed."""
    others = [at for name, at in deadlines.items() if name != "acknowledge"] or list(deadlines.values())
    if others and all(isinstance(at, str) and at.endswith("Z") and len(at) == len(others[0]) for at in others):
        with contextlib.suppress(ValueError):
            return epoch(min(others))
    current = due(deadlines, "claimed")
    return current[0] if current else None


def is_overdue(deadlines: dict[str, str], state: str | None, now: float) -> bool:
    """Whether the current deadline (``current_deadline``) has passed at ``now`` (epoch seconds)."""
    current = _current(deadlines, state)
    return current is not None and current[0] < now


#: Rows (or keys) a purge reads and changes at a time: each chunk is one short write, so
#: that intake goes on between them.
PURGE_CHUNK = 500
#: A blob's digest as it stands in a stored complaint or dead letter.
_BLOB_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


def blobs_named(stored: str) -> set[str]:
    """Every blob a stored complaint or dead letter (its JSON text) may name: its original's
    and attachments' digests, and any other 64 hexadecimal digits, since a blob is kept
    when in doubt."""
    return set(_BLOB_DIGEST.findall(stored)) if "sha256" in stored else set()


#: What an action's details may hold of personal data: a reply's or a note's text, a
#: platform's error for an acknowledgement given up on (which may quote a phone number).
PERSONAL_DETAILS = ("text", "error")


def anonymise_action(record: dict[str, Any], purged_at: str) -> dict[str, Any] | None:
    """An action without personal data (what was done, by whom, when, the state it left
    stay), or None when it holds none."""
    details = record.get("details") or {}
    if not any(key in details for key in PERSONAL_DETAILS):
        return None
    return {**record, "details": {**{k: v for k, v in details.items() if k not in PERSONAL_DETAILS}, "purged_at": purged_at}}


def identity_kinds(identities: str) -> str | None:
    """A merge suggestion's identities (``phone:+7916...,email:...``) as their kinds only
    (``phone,email``); None when they hold no value any more."""
    if ":" not in identities:
        return None
    return ",".join(dict.fromkeys(part.split(":", 1)[0] for part in identities.split(",")))


def anonymise(body: dict[str, Any], purged_at: str) -> tuple[dict[str, Any], set[str]]:
    """A complaint without personal data: what statistics need stays (channel, times,
    registration, kind of door, language, urgency, deadlines). Returns the blobs it named."""
    blobs = {a["sha256"] for a in body.get("attachments") or [] if a.get("sha256")}
    raw = (body.get("meta") or {}).get("raw") or {}
    if raw.get("sha256"):
        blobs.add(raw["sha256"])
    submitted_by = body.get("submitted_by")
    kept = {
        **body,
        "customer": {"customer_id": (body.get("customer") or {}).get("customer_id"), "name": None, "identities": []},
        "reply_to": None,
        "subject": None,
        "text": "",
        "attachments": [],
        "submitted_by": {**submitted_by, "person": None} if submitted_by else None,
        "meta": {"purged_at": purged_at, "attachments": len(body.get("attachments") or []),
                 **({"door": body["meta"]["door"]} if (body.get("meta") or {}).get("door") else {})},
    }
    return kept, blobs


class Registry(ABC):
    """One interface, two backends (``sqlite``, ``redis``)."""

    backend: str = ""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.number_format = NumberFormat(settings.number_format)

    # -- life cycle -------------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def healthy(self) -> bool: ...

    # -- intake -----------------------------------------------------------------------
    async def submit(self, complaint: Complaint) -> Receipt:
        """Register ``complaint`` atomically and return its receipt."""
        receipt = await self._submit(make_plan(complaint, self.settings, self.number_format))
        complaint.registration_number = receipt.registration_number
        complaint.customer.customer_id = receipt.customer_id
        if receipt.status != "duplicate" and receipt.complaint_id:
            complaint.id = receipt.complaint_id
        return receipt

    def plan(self, complaint: Complaint) -> SubmitPlan | Exception:
        """What ``submit_many`` computes for a complaint before the backend's atomic step (its
        fingerprint, its counter), or why it cannot be registered. The intake plans each
        complaint as it is prepared, while the batch before it is being registered."""
        try:
            return make_plan(complaint, self.settings, self.number_format)
        except Exception as exc:  # a complaint the plan cannot be made for fails alone
            return exc

    async def submit_many(self, complaints: list[Complaint],
                          plans: list[SubmitPlan | Exception] | None = None) -> list[Receipt | Exception]:
        """Register several complaints in this order, each atomically, in as few round trips
        (and, on SQLite, transactions) as the backend allows: the intake's group commit.
        One item's failure is returned in its place and does not touch the others; a
        backend that cannot be reached at all raises. ``plans``: each complaint's ``plan``,
        made earlier (made here when not given)."""
        if plans is None:
            plans = [self.plan(complaint) for complaint in complaints]
        ready = [plan for plan in plans if isinstance(plan, SubmitPlan)]
        results = iter(await self._submit_many(ready) if ready else [])
        receipts: list[Receipt | Exception] = []
        for complaint, plan in zip(complaints, plans):
            result = plan if isinstance(plan, Exception) else next(results)
            if isinstance(result, Receipt):
                complaint.registration_number = result.registration_number
                complaint.customer.customer_id = result.customer_id
                if result.status != "duplicate" and result.complaint_id:
                    complaint.id = result.complaint_id
            receipts.append(result)
        return receipts

    @abstractmethod
    async def _submit(self, plan: SubmitPlan) -> Receipt: ...

    async def _submit_many(self, plans: list[SubmitPlan]) -> list[Receipt | Exception]:
        """Backends override this to batch; by default the plans are submitted one by one."""
        results: list[Receipt | Exception] = []
        for plan in plans:
            try:
                results.append(await self._submit(plan))
            except RegistryError as exc:
                results.append(exc)
        return results

    # -- reading ----------------------------------------------------------------------
    @abstractmethod
    async def get_message(self, complaint_id: str) -> Complaint | None:
        """One stored message (complaint, follow-up, repeat or automatic) by its id."""

    @abstractmethod
    async def get_registration(self, registration_number: str) -> dict[str, Any] | None:
        """A registration: its first complaint, follow-ups and repeats, in order."""

    @abstractmethod
    async def list_messages(self, *, limit: int = 50, before: str | None = None) -> list[Complaint]:
        """Stored messages, newest first; ``before`` is a complaint id to page from."""

    @abstractmethod
    async def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """``{customer_id, name, identities, registrations}``."""

    @abstractmethod
    async def merge_suggestions(self) -> list[dict[str, Any]]:
        """Open suggestions to merge two customers that one message linked."""

    async def search(self, *, channel: str | None = None, urgency: str | None = None, state: str | None = None,
                     language: str | None = None, kind: str | None = None, since: str | None = None,
                     until: str | None = None, text: str | None = None, customer_id: str | None = None,
                     undelivered: bool = False, overdue: bool = False, limit: int = 50, before: str | None = None,
                     scan_limit: int = DEFAULT_SEARCH_SCAN_LIMIT) -> SearchResult:
        """Messages matching every given filter, newest first, as inbox rows:
        ``{"complaint": {...}, "kind": ..., "state": ..., "assigned_to": ..., "undelivered": ...}``.

        ``since``/``until`` are ISO 8601 instants compared, as instants, with ``received_at``; ``text``
        matches the subject, text and customer name case-insensitively; ``state`` is the
        registration's (open, claimed, closed); ``undelivered``: only registrations whose
        acknowledgement was given up on; ``overdue``: only messages whose current deadline
        (``current_deadline``) has passed (never an automatic reply, which opens no
        registration and waits for no answer). At most ``scan_limit`` messages are looked at; a
        search that stops there short of ``limit`` rows says so (``scan_limited``), and its
        ``next_before`` goes on from the last message it looked at, so that paging on
        reaches every match.
        """
        needle = (text or "").casefold()
        since_epoch, until_epoch = epoch(since) if since else -math.inf, epoch(until) if until else math.inf
        now = utcnow().timestamp()
        rows: list[dict[str, Any]] = []
        scanned, cursor = 0, before
        states: dict[str, dict[str, Any]] = {}

        def matches_itself(c: Complaint) -> bool:
            """The filters a message answers without its registration."""
            if channel and c.channel != channel or urgency and c.urgency != urgency:
                return False
            if language and c.language != language or customer_id and c.customer.customer_id != customer_id:
                return False
            if (since or until) and not since_epoch <= epoch(c.received_at) < until_epoch:
                return False
            return not needle or needle in f"{c.subject or ''}\n{c.text}\n{c.customer.name or ''}".casefold()

        while scanned < scan_limit:
            asked = min(200, scan_limit - scanned)  # and one more, to know whether the oldest is among them
            fetched = await self._search_candidates(limit=asked + 1, before=cursor, channel=channel, state=state,
                                                    since=since, until=until, overdue_at=now if overdue else None)
            page = fetched[:asked]
            scanned += len(page)
            passing = [c for c in page if matches_itself(c)]
            for start in range(0, len(passing), 50):  # the registrations' states read 50 messages at a time
                chunk = passing[start:start + 50]
                unread = sorted({c.registration_number for c in chunk if c.registration_number} - states.keys())
                if unread:
                    read = await self._registration_states(unread)
                    states.update((number, read.get(number) or {}) for number in unread)
                for c in chunk:
                    info = states.get(c.registration_number or "", {})
                    row_kind = "automatic" if c.auto_submitted else info.get("kinds", {}).get(c.id, "new")
                    if kind and row_kind != kind or state and info.get("state") != state:
                        continue
                    if undelivered and not info.get("acknowledgement_failed"):
                        continue
                    if overdue and (row_kind == "automatic" or not is_overdue(c.deadlines, info.get("state"), now)):
                        continue
                    if len(rows) == limit:  # one match more than asked for: there is a next page
                        return SearchResult(rows, rows[-1]["complaint"]["id"], scan_limited=False)
                    rows.append({"complaint": c.to_dict(), "kind": row_kind, "state": info.get("state"),
                                 "assigned_to": info.get("assigned_to"),
                                 "undelivered": bool(info.get("acknowledgement_failed"))})
            if len(fetched) <= asked:  # the oldest message has been looked at
                return SearchResult(rows, None, scan_limited=False)
            cursor = page[-1].id
        if len(rows) == limit:  # a full page: the next one starts after its last row
            return SearchResult(rows, rows[-1]["complaint"]["id"], scan_limited=False)
        # stopped at the scan limit: older messages were not looked at; the next page starts after the last one that was
        return SearchResult(rows, cursor, scan_limited=True)

    async def _registration_states(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """``registration_state`` of each number that is registered; a backend that can read
        many at once does so."""
        states = {}
        for number in numbers:
            if (found := await self.registration_state(number)) is not None:
                states[number] = found
        return states

    async def _search_candidates(self, *, limit: int, before: str | None, channel: str | None, state: str | None,
                                 since: str | None, until: str | None, overdue_at: float | None = None) -> list[Complaint]:
        """The next messages ``search`` looks at, newest first, from ``before``. A backend
        that can skip messages failing the given filters by an index does so (every one it
        returns is still checked; ``overdue_at``: those that cannot be overdue at that
        instant may be skipped); by default, every message."""
        return await self.list_messages(limit=limit, before=before)

    # -- operators' actions -----------------------------------------------------------
    @abstractmethod
    async def registration_state(self, registration_number: str) -> dict[str, Any] | None:
        """``{state, assigned_to, updated_at, kinds: {complaint_id: kind}, acknowledgement_failed}``
        (the last: whether an acknowledgement of it was given up on) or None."""

    @abstractmethod
    async def apply_action(self, registration_number: str, action: str, operator: str,
                           details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an operator's action (``claim``, ``reply``, ``close``, ``reopen``, ``note``) on a
        registration: audited, state updated, and emitted on the queue as an event of
        that name. Returns the action record. Raises ``KeyError`` for an unknown number."""

    @abstractmethod
    async def actions(self, registration_number: str) -> list[dict[str, Any]]:
        """Every action recorded on a registration, oldest first."""

    @abstractmethod
    async def registrations_due(self, now: float) -> dict[str, dict[str, int]]:
        """The registrations not closed, by the deadline that matters for each now
        (``current_deadline`` of the deadlines of the message that opened it, in its state):
        ``{name: {"pending": how many, "overdue": how many of them passed it before now,
        "due_soon": how many pass it within settings.due_soon_seconds from now}}`` (``now``:
        epoch seconds). Read from an index kept as registrations are opened and change state,
        not from the messages."""

    @abstractmethod
    async def merge_customers(self, source: str, target: str, operator: str, suggestion_id: str | None = None) -> str:
        """Merge customer ``source`` into ``target`` (reversible): identities of the source
        then resolve to the target. Audited and emitted as ``customers_merged``; closes the
        suggestion if given. Returns the merge id."""

    @abstractmethod
    async def unmerge(self, merge_id: str, operator: str) -> None:
        """Undo a merge: the source customer stands alone again (``customers_unmerged``)."""

    @abstractmethod
    async def reject_suggestion(self, suggestion_id: str, operator: str) -> None: ...

    @abstractmethod
    async def merges(self, customer_id: str) -> list[dict[str, Any]]:
        """Merges (active and undone) involving the customer, oldest first."""

    @abstractmethod
    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit records (operators' actions, merges), newest first."""

    # -- queue ------------------------------------------------------------------------
    @abstractmethod
    async def read_events(self, group: str, consumer: str, count: int = 10, block_ms: int = 0) -> list[Event]:
        """Events not yet acknowledged by ``group``: first those delivered to a consumer
        longer than the visibility timeout ago (redelivery), then new ones."""

    @abstractmethod
    async def ack_events(self, group: str, ids: list[str]) -> int: ...

    @abstractmethod
    async def create_group(self, group: str, *, at_end: bool = False) -> None:
        """Create a consumer group (no-op if it exists): from the first event, or, with
        ``at_end``, from the next event only (live views that need no backlog)."""

    @abstractmethod
    async def delete_group(self, group: str) -> None:
        """Forget a consumer group and its pending deliveries."""

    @abstractmethod
    async def queue_length(self) -> int: ...

    # -- dead letters -----------------------------------------------------------------
    @abstractmethod
    async def add_dead_letter(self, record: dict[str, Any], reason: str) -> str: ...

    @abstractmethod
    async def list_dead_letters(self, include_resolved: bool = False) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def resolve_dead_letter(self, dead_letter_id: str, receipt: Receipt) -> None: ...

    # -- retention --------------------------------------------------------------------
    @abstractmethod
    async def purge(self, before: str, recheck_blobs: Iterable[str] = ()) -> dict[str, Any]:
        """Remove personal data of every message received before ``before`` (ISO 8601):
        texts, names, identities of customers with nothing newer, dead letters, queue
        events, the texts and errors of actions taken before it, and the identities' values
        in merge suggestions made before it (their kinds stay). Returns ``{"messages": n,
        "customers": n, "dead_letters": n, "events": n, "actions": n, "merge_suggestions": n,
        "blobs": [...]}``: of the blobs of the messages purged now and ``recheck_blobs``
        (blobs an earlier purge could not delete), those no kept message or dead letter
        names."""

    # -- adapter state ----------------------------------------------------------------
    @abstractmethod
    async def get_cursor(self, name: str) -> str | None: ...

    @abstractmethod
    async def set_cursor(self, name: str, value: str) -> None: ...

    @abstractmethod
    async def get_entries(self, name: str) -> dict[str, str]:
        """Every entry of the map ``name`` (an adapter's held acknowledgements, say)."""

    @abstractmethod
    async def set_entry(self, name: str, key: str, value: str | None) -> None:
        """Set one entry of the map ``name``, or remove it (``value`` None): one entry written, whatever the map's size."""

    @abstractmethod
    async def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lock ``name`` for ``owner``; False while another holds it."""

    @abstractmethod
    async def release_lock(self, name: str, owner: str) -> None: ...

    # -- attempts (login lockout) ------------------------------------------------------
    @abstractmethod
    async def count_attempt(self, name: str, limit: int, window_seconds: float, lock_seconds: float) -> float:
        """One attempt at ``name`` (the logins of one user name, say), counted in one atomic
        step for every process: 0 when it may go ahead, else the seconds the lock of ``name``
        still lasts (then it is not counted). The ``limit``-th attempt within
        ``window_seconds`` goes ahead and locks ``name`` for ``lock_seconds``."""

    @abstractmethod
    async def clear_attempts(self, name: str) -> None:
        """Forget the attempts at ``name`` and lift its lock (a login that succeeded)."""

    # -- shared rate limits -----------------------------------------------------------
    @abstractmethod
    async def take_tokens(self, names: list[str], per_second: float, burst: float) -> list[bool]:
        """One token from each bucket of ``names`` in turn (a door's requests from one
        address, say; a name twice takes two), in one atomic step for every process: per
        name, True when there was one. A bucket holds up to ``burst`` tokens, refilled at
        ``per_second`` on the registry's clock, and is forgotten once full again."""
