"""Urgency: what the door said (an IVR's urgent option), else ``normal``."""
from __future__ import annotations

from normalizer.pipeline import Draft, NormalizerSettings
from normalizer.schema import URGENCIES


def step(draft: Draft, settings: NormalizerSettings) -> None:
    given = draft.inbound.urgency
    if given in URGENCIES:
        draft.complaint.urgency = given  # type: ignore[assignment]
        draft.complaint.meta["urgency_rule"] = "door"
