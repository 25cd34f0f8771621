"""Deadlines from ``received_at`` on the business calendar, as UTC ISO 8601 (``...Z``).

Deadlines are whole seconds, counted from the second of receipt: every complaint received
in one second with one urgency has the same deadlines, worked out once
(``DeadlinePolicies.due_texts``).

``meta["timezone"]`` carries the calendar's zone so acknowledgements show local time;
``meta["deadlines_overridden"]`` lists the policies the urgency shortened.
"""
from __future__ import annotations

from normalizer.pipeline import Draft, NormalizerSettings


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    calendar = settings.business_calendar
    # received_at is UTC ISO 8601 ending in "Z", as the pipeline's skeleton writes it
    second = complaint.received_at[:19]
    complaint.deadlines, overridden = settings.deadlines.due_texts(second, complaint.urgency, calendar)
    complaint.meta["timezone"] = calendar.timezone_name
    if overridden:
        complaint.meta["deadlines_overridden"] = overridden
