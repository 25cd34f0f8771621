"""Urgency from the configured rules, or from the door (an IVR's urgent option) when higher.

``meta["urgency_rule"]`` names the decision: a rule's name, ``door``, or ``default`` when
nothing fired; ``meta["urgency_match"]`` keeps the words that fired the rule.
"""
from __future__ import annotations

from normalizer.pipeline import Draft, NormalizerSettings
from normalizer.urgency_rules import RANK


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    found = settings.urgency.classify(f"{complaint.subject or ''}\n{complaint.text}")
    door = draft.inbound.urgency if draft.inbound.urgency in RANK else None
    if found is not None and (door is None or RANK[found.level] >= RANK[door]):
        complaint.urgency = found.level  # type: ignore[assignment]
        complaint.meta["urgency_rule"] = found.rule
        complaint.meta["urgency_match"] = found.excerpt
    elif door is not None:
        complaint.urgency = door  # type: ignore[assignment]
        complaint.meta["urgency_rule"] = "door"
    else:
        complaint.urgency = "normal"
        complaint.meta["urgency_rule"] = "default"
