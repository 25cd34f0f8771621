"""The message's language: the door's locale if it gave one, else detected from the text.

``meta["language_source"]`` says which: ``door``, ``detected`` or ``default`` (no letters,
or the detector was not sure).
"""
from __future__ import annotations

from normalizer.language_detection import detect
from normalizer.pipeline import Draft, NormalizerSettings


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    if complaint.language:
        complaint.language = complaint.language.replace("_", "-").split("-")[0].lower()
        complaint.meta["language_source"] = "door"
        return
    found = detect(f"{complaint.subject or ''}\n{complaint.text}", settings.languages, settings.language_accuracy,
                   settings.language_min_distance, settings.language_max_chars)
    complaint.language = found or settings.default_language
    complaint.meta["language_source"] = "detected" if found else "default"
