"""The message's language: the door's locale if it gave one, else a guess from the text."""
from __future__ import annotations

import re

from normalizer.pipeline import Draft, NormalizerSettings

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_UKRAINIAN = re.compile(r"[іїєґІЇЄҐ]")
_POLISH = re.compile(r"[ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]")
_GERMAN = re.compile(r"[äöüßÄÖÜ]")


def guess_language(text: str, default: str) -> str:
    if not text.strip():
        return default
    if _CYRILLIC.search(text):
        return "uk" if _UKRAINIAN.search(text) else "ru"
    if _POLISH.search(text):
        return "pl"
    if _GERMAN.search(text):
        return "de"
    return "en" if re.search(r"[A-Za-z]", text) else default


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    if complaint.language:
        complaint.language = complaint.language.split("-")[0].split("_")[0].lower()
        return
    complaint.language = guess_language(f"{complaint.subject or ''}\n{complaint.text}", settings.default_language)
