"""Deadlines from ``received_at`` on the business calendar, as UTC ISO 8601 (``...Z``).

``meta["timezone"]`` carries the calendar's zone so acknowledgements show local time;
``meta["deadlines_overridden"]`` lists the policies the urgency shortened.
"""
from __future__ import annotations

from datetime import UTC, datetime

from normalizer.pipeline import Draft, NormalizerSettings


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    calendar = settings.business_calendar
    received = datetime.fromisoformat(complaint.received_at)
    due, overridden = settings.deadlines.compute(received, complaint.urgency, calendar)
    complaint.deadlines = {name: _iso(when) for name, when in sorted(due.items(), key=lambda item: item[1])}
    complaint.meta["timezone"] = calendar.timezone_name
    if overridden:
        complaint.meta["deadlines_overridden"] = sorted(overridden)
