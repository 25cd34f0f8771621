"""The normalisation pipeline: an ordered tuple of small named steps.

Each step is a plain function ``step(draft, settings) -> None`` that reads the
``Inbound`` and fills or corrects the ``Complaint`` being built. A step that finds the
message unusable raises ``NormalizationError``; the gateway then keeps the message in the
dead-letter store with that reason.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from importlib import import_module
from typing import Any

from gateway.config import ConfigError, validate
from gateway.ids import new_id
from gateway.inbound import Inbound
from normalizer import deadlines as deadline_policies
from normalizer.calendar import BusinessCalendar, CalendarError
from normalizer.deadlines import DeadlineError, DeadlinePolicies
from normalizer.language_detection import UnknownLanguageError, preload, to_language
from normalizer.schema import Attachment, Complaint, Customer, SubmittedBy
from normalizer.urgency_rules import SCHEMA as URGENCY_SCHEMA
from normalizer.urgency_rules import UrgencyRules


class NormalizationError(Exception):
    """The message cannot be made into a complaint; the text says why."""


#: Languages the detector chooses among unless ``normalizer.language.candidates`` says otherwise.
DEFAULT_LANGUAGES: tuple[str, ...] = ("ru", "pl", "en", "uk", "de")

LANGUAGE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "candidates": {"type": "array", "minItems": 1, "uniqueItems": True,
                       "items": {"type": "string", "pattern": "^[a-z]{2}$"}},
        "accuracy": {"enum": ["high", "low"]},
        "min_relative_distance": {"type": "number", "minimum": 0, "maximum": 0.99},
        "max_chars": {"type": "integer", "minimum": 1},
        "preload": {"type": "boolean"},
    },
}
CALENDAR_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "country": {"type": ["string", "null"]},
        "subdivision": {"type": ["string", "null"]},
        "working_hours": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
        "working_days": {"type": "array", "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}},
        "extra_holidays": {"type": "array", "items": {"type": "string", "format": "date"}},
        "extra_working_days": {"type": "array", "items": {"type": "string", "format": "date"}},
    },
}


@dataclass(slots=True)
class NormalizerSettings:
    """The ``normalizer:`` section of config.yaml, with its rules and calendar compiled once."""

    default_region: str = "RU"
    timezone: str = "Europe/Moscow"
    default_language: str = "ru"
    max_text_chars: int = 100_000
    #: ``language``: the candidates the detector chooses among, and how hard it tries.
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    language_accuracy: str = "high"
    language_min_distance: float = 0.0
    language_max_chars: int = 2_000
    urgency: UrgencyRules = field(default_factory=UrgencyRules.default)
    #: Built from ``timezone`` and ``default_region`` when not given.
    calendar: BusinessCalendar | None = None
    deadlines: DeadlinePolicies = field(default_factory=DeadlinePolicies.from_config)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.calendar is None:
            self.calendar = BusinessCalendar(self.timezone, self.default_region)

    @property
    def business_calendar(self) -> BusinessCalendar:
        assert self.calendar is not None
        return self.calendar

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> NormalizerSettings:
        """Build from config; a mistake raises ``ConfigError`` naming the key."""
        section = dict(section or {})
        known = {k: section.pop(k) for k in ("default_region", "timezone", "default_language", "max_text_chars") if k in section}
        language = section.pop("language", None) or {}
        urgency = section.pop("urgency", None) or {}
        calendar = section.pop("calendar", None) or {}
        deadlines = section.pop("deadlines", None) or {}
        validate(language, LANGUAGE_SCHEMA, prefix="normalizer.language")
        validate(calendar, CALENDAR_SCHEMA, prefix="normalizer.calendar")
        validate(deadlines, deadline_policies.SCHEMA, prefix="normalizer.deadlines")
        validate(urgency, URGENCY_SCHEMA, prefix="normalizer.urgency")
        candidates = tuple(language.get("candidates", DEFAULT_LANGUAGES))
        try:
            for code in candidates:
                to_language(code)
        except UnknownLanguageError as exc:
            raise ConfigError(f"normalizer.language.candidates: {exc}") from exc
        if language.get("preload", False) and len(candidates) > 1:
            preload(candidates, language.get("accuracy", "high"))
        timezone_name = known.get("timezone", "Europe/Moscow")
        try:
            hours = calendar.get("working_hours", ["09:00-18:00"])
            business_calendar = BusinessCalendar(
                timezone_name, calendar.get("country", known.get("default_region", "RU")),
                subdivision=calendar.get("subdivision"),
                working_hours=[hours] if isinstance(hours, str) else hours,
                working_days=calendar.get("working_days"),
                extra_holidays=calendar.get("extra_holidays", ()), extra_working_days=calendar.get("extra_working_days", ()))
        except CalendarError as exc:
            raise ConfigError(f"normalizer.calendar: {exc}") from exc
        try:
            policies = DeadlinePolicies.from_config(deadlines)
        except DeadlineError as exc:
            raise ConfigError(f"normalizer.deadlines: {exc}") from exc
        return cls(
            **known,
            languages=candidates,
            language_accuracy=language.get("accuracy", "high"),
            language_min_distance=float(language.get("min_relative_distance", 0.0)),
            language_max_chars=int(language.get("max_chars", 2_000)),
            urgency=UrgencyRules.from_config(urgency) if urgency else UrgencyRules.default(),
            calendar=business_calendar,
            deadlines=policies,
            options=section,
        )


@dataclass(slots=True)
class Draft:
    """The complaint being built and the message it is built from."""

    inbound: Inbound
    complaint: Complaint


Step = Callable[[Draft, NormalizerSettings], None]

#: The default pipeline, in order. Each name is a module of ``normalizer.steps``.
DEFAULT_STEPS: tuple[str, ...] = (
    "identities",
    "html_to_text",
    "clean_text",
    "require_content",
    "language",
    "urgency",
    "deadlines",
)


def load_step(name: str) -> Step:
    module = import_module(f"normalizer.steps.{name}")
    step: Step = module.step
    return step


class Normalizer:
    """Runs the steps over an Inbound and returns the Complaint."""

    def __init__(self, settings: NormalizerSettings | None = None, steps: Sequence[str] = DEFAULT_STEPS) -> None:
        self.settings = settings or NormalizerSettings()
        self.step_names = tuple(steps)
        self._steps = [load_step(n) for n in self.step_names]

    def normalize(self, inbound: Inbound) -> Complaint:
        draft = Draft(inbound=inbound, complaint=_skeleton(inbound))
        for step in self._steps:
            step(draft, self.settings)
        return draft.complaint


def _skeleton(inbound: Inbound) -> Complaint:
    received = inbound.received_at
    if received.tzinfo is None:
        raise NormalizationError("received_at has no time zone")
    submitted_by = SubmittedBy(**inbound.submitted_by) if inbound.submitted_by else None
    return Complaint(
        id=new_id(),
        channel=inbound.channel,
        channel_message_id=inbound.message_id,
        received_at=received.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        customer=Customer(name=(inbound.name or "").strip() or None),
        text=inbound.text or "",
        subject=(inbound.subject or "").strip() or None,
        language=inbound.language,
        attachments=[
            Attachment(filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256 or "")
            for a in inbound.attachments
            if not a.inline
        ],
        urgency="normal",
        in_reply_to=inbound.in_reply_to,
        submitted_by=submitted_by,
        auto_submitted=inbound.auto_submitted,
        # the original as received (shown to operators, purged with the rest): where it lies in the
        # blob store, or a small one's text
        meta={**inbound.meta, **_raw_of(inbound)},
    )


def _raw_of(inbound: Inbound) -> dict[str, Any]:
    if inbound.raw_text is not None:
        return {"raw": {"content_type": inbound.raw_content_type, "text": inbound.raw_text}}
    if inbound.raw_sha256:
        return {"raw": {"sha256": inbound.raw_sha256, "content_type": inbound.raw_content_type}}
    return {}

