"""A complaint must say something: text, a subject or an attachment."""
from __future__ import annotations

from normalizer.pipeline import Draft, NormalizationError, NormalizerSettings


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    if not complaint.text and not complaint.subject and not complaint.attachments:
        raise NormalizationError("the message has no text, no subject and no attachment")
