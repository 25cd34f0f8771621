"""Deadline policies: "acknowledge within 8 working hours", "respond within 5 working days"...

Each policy is a name and one amount in one unit, counted from ``received_at`` on the
business calendar. Urgency overrides replace some policies for urgent complaints (an
immediate danger is not answered "within 8 working hours").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from normalizer.calendar import BusinessCalendar

UNITS = ("working_hours", "working_days", "hours", "calendar_days")

DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "acknowledge": {"working_hours": 8},
    "respond": {"working_days": 5},
    "technical": {"hours": 72},
    "legal": {"calendar_days": 60},
}
DEFAULT_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "immediate": {"acknowledge": {"hours": 1}, "respond": {"hours": 24}, "technical": {"hours": 24}},
}

_RULE = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "properties": {
        **{unit: {"type": "number", "minimum": 0} for unit in UNITS},
        "roll_to_working_day": {"type": "boolean"},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "policies": {"type": "object", "additionalProperties": {"oneOf": [_RULE, {"type": "null"}]}},
        "overrides": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"oneOf": [_RULE, {"type": "null"}]}}},
    },
}


class DeadlineError(ValueError):
    """A policy is not one amount in one known unit."""


@dataclass(frozen=True, slots=True)
class DeadlineRule:
    """One amount of one unit; ``roll_to_working_day`` only matters for calendar days."""

    unit: str
    amount: float
    roll_to_working_day: bool = False

    @classmethod
    def parse(cls, name: str, spec: dict[str, Any]) -> DeadlineRule:
        units = [u for u in UNITS if u in spec]
        if len(units) != 1:
            raise DeadlineError(f"deadline {name!r}: give exactly one of {', '.join(UNITS)}")
        unit = units[0]
        amount = float(spec[unit])
        if unit in ("working_days", "calendar_days") and amount != int(amount):
            raise DeadlineError(f"deadline {name!r}: {unit} must be a whole number")
        return cls(unit, amount, bool(spec.get("roll_to_working_day", False)))

    def due(self, received: datetime, calendar: BusinessCalendar) -> datetime:
        if self.unit == "working_hours":
            return calendar.add_working_time(received, timedelta(hours=self.amount))
        if self.unit == "working_days":
            return calendar.end_of_working_day(received, int(self.amount))
        if self.unit == "hours":
            return received + timedelta(hours=self.amount)
        return calendar.end_of_calendar_day(received, int(self.amount), self.roll_to_working_day)


@dataclass(slots=True)
class DeadlinePolicies:
    """The policies of ``normalizer.deadlines`` and their overrides per urgency."""

    policies: dict[str, DeadlineRule] = field(default_factory=dict)
    overrides: dict[str, dict[str, DeadlineRule]] = field(default_factory=dict)
    #: (calendar, second, urgency) -> what ``due_texts`` answered, for the last few seconds
    _recent: dict[tuple[BusinessCalendar, str, str], tuple[dict[str, str], list[str]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, section: dict[str, Any] | None = None) -> DeadlinePolicies:
        """Configured policies merge into the defaults by name; ``null`` removes one."""
        section = section or {}
        policies = _merge(DEFAULT_POLICIES, section.get("policies") or {})
        overrides: dict[str, dict[str, DeadlineRule]] = {}
        for urgency in {*DEFAULT_OVERRIDES, *(section.get("overrides") or {})}:
            given = (section.get("overrides") or {}).get(urgency)
            merged = _merge(DEFAULT_OVERRIDES.get(urgency, {}), given or {})
            overrides[urgency] = {n: DeadlineRule.parse(n, s) for n, s in merged.items()}
        return cls({n: DeadlineRule.parse(n, s) for n, s in policies.items()}, overrides)

    def compute(self, received: datetime, urgency: str, calendar: BusinessCalendar) -> tuple[dict[str, datetime], list[str]]:
        """Every policy's due instant (UTC) and the names an urgency override shortened.

        An override never makes a deadline later than the ordinary policy would."""
        override = self.overrides.get(urgency, {})
        due: dict[str, datetime] = {}
        overridden: list[str] = []
        for name in {**self.policies, **override}:
            ordinary = self.policies[name].due(received, calendar) if name in self.policies else None
            urgent = override[name].due(received, calendar) if name in override else None
            if urgent is not None and (ordinary is None or urgent < ordinary):
                due[name] = urgent
                overridden.append(name)
            elif ordinary is not None:
                due[name] = ordinary
        return due, overridden


    def due_texts(self, second: str, urgency: str, calendar: BusinessCalendar) -> tuple[dict[str, str], list[str]]:
        """``compute`` for the UTC second ``second`` (``YYYY-MM-DDTHH:MM:SS``), as whole-second
        UTC ISO 8601 texts (``...Z``) in due order, and the overridden policies sorted.

        Every complaint received in one second with one urgency has the same deadlines, so
        they are worked out once per second and urgency. Callers get their own copies."""
        key = (calendar, second, urgency)
        found = self._recent.get(key)
        if found is None:
            due, overridden = self.compute(datetime.fromisoformat(second).replace(tzinfo=UTC), urgency, calendar)
            found = ({name: _iso(when) for name, when in sorted(due.items(), key=lambda item: item[1])},
                     sorted(overridden))
            if len(self._recent) >= RECENT_SECONDS:
                self._recent.clear()
            self._recent[key] = found
        return dict(found[0]), list(found[1])


#: Seconds (times urgencies) whose deadlines are kept by ``DeadlinePolicies.due_texts``.
RECENT_SECONDS = 64


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **given}
    return {name: spec for name, spec in merged.items() if spec is not None}
