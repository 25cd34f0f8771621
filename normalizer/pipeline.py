"""The normalisation pipeline: an ordered tuple of small named steps.

Each step is a plain function ``step(draft, settings) -> None`` that reads the
``Inbound`` and fills or corrects the ``Complaint`` being built. A step that finds the
message unusable raises ``NormalizationError``; the gateway then keeps the message in the
dead-letter store with that reason.
"""
from __future__ import annotations

import uuid
from datetime import timezone
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from gateway.inbound import Inbound
from normalizer.schema import Attachment, Complaint, Customer, SubmittedBy


class NormalizationError(Exception):
    """The message cannot be made into a complaint; the text says why."""


@dataclass(slots=True)
class NormalizerSettings:
    """The ``normalizer:`` section of config.yaml."""

    default_region: str = "RU"
    timezone: str = "Europe/Moscow"
    default_language: str = "ru"
    max_text_chars: int = 100_000
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> NormalizerSettings:
        section = dict(section or {})
        known = {k: section.pop(k) for k in ("default_region", "timezone", "default_language", "max_text_chars") if k in section}
        return cls(**known, options=section)


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
        id=uuid.uuid4().hex,
        channel=inbound.channel,
        channel_message_id=inbound.message_id,
        received_at=received.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
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
        meta=dict(inbound.meta),
    )

