"""Turning registry records into what a page shows: local times, excerpts, time left."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.inbox.i18n import Translate, duration_text
from gateway.registry.base import current_deadline, epoch

EXCERPT_CHARS = 160


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def local_time(value: str | None, tz: ZoneInfo) -> str:
    if not value:
        return "—"
    try:
        return parse_instant(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def deadline_view(name: str, at: str, now: datetime, _: Translate) -> dict[str, Any]:
    left = (parse_instant(at) - now).total_seconds()
    overdue = left < 0
    text = _("overdue", t=duration_text(left, _)) if overdue else _("left", t=duration_text(left, _))
    return {"name": name, "at": at, "overdue": overdue, "text": text}


def deadlines_view(complaint: dict[str, Any], now: datetime, _: Translate) -> list[dict[str, Any]]:
    """Every deadline of a message, the nearest first (by instant: "12:00:00Z" is before
    "12:00:00.5Z", though not as text); one whose instant does not parse is left out."""
    dated = []
    for name, at in (complaint.get("deadlines") or {}).items():
        try:
            dated.append((epoch(at), name, at))
        except (TypeError, ValueError):
            continue
    return [deadline_view(name, at, now, _) for instant, name, at in sorted(dated)]


def list_deadline(complaint: dict[str, Any], state: str | None, now: datetime, _: Translate) -> dict[str, Any] | None:
    """The one deadline that matters in the list (``current_deadline``)."""
    current = current_deadline(complaint.get("deadlines") or {}, state)
    return deadline_view(*current, now, _) if current else None


def row_view(complaint: dict[str, Any], kind: str, state: str | None, assigned_to: str | None,
             tz: ZoneInfo, _: Translate, now: datetime | None = None, undelivered: bool = False) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    customer = complaint.get("customer") or {}
    return {
        "id": complaint["id"],
        "number": complaint.get("registration_number"),
        "kind": kind,
        "channel": complaint.get("channel"),
        "customer_id": customer.get("customer_id"),
        "customer_name": customer.get("name"),
        "subject": complaint.get("subject"),
        "excerpt": excerpt(complaint.get("text")),
        "urgency": complaint.get("urgency") or "normal",
        "state": state,
        "assigned_to": assigned_to,
        "received_at": complaint.get("received_at"),
        "received_local": local_time(complaint.get("received_at"), tz),
        "deadline": list_deadline(complaint, state, now, _) if kind != "automatic" else None,  # it waits for no answer
        #: an acknowledgement of its registration was given up on: the number did not reach the customer
        "undelivered": undelivered,
    }


def message_view(kind: str, complaint: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {"id": complaint["id"], "kind": kind, "channel": complaint.get("channel"),
            "received_local": local_time(complaint.get("received_at"), tz), "excerpt": excerpt(complaint.get("text"), 100)}


def filesize(size: int | None) -> str:
    value = float(size or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
