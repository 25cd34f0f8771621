"""Plain UTF-8 text: unified newlines, no control characters, no trailing blanks, bounded."""
from __future__ import annotations

import re
import unicodedata

from normalizer.pipeline import Draft, NormalizerSettings

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_BLANK_RUN = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text))
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


def step(draft: Draft, settings: NormalizerSettings) -> None:
    complaint = draft.complaint
    complaint.text = clean_text(complaint.text)
    if len(complaint.text) > settings.max_text_chars:
        complaint.meta["text_truncated_from"] = len(complaint.text)
        complaint.text = complaint.text[: settings.max_text_chars]
    if complaint.subject:
        complaint.subject = " ".join(_CONTROL.sub("", complaint.subject).split())
    if complaint.customer.name:
        complaint.customer.name = " ".join(_CONTROL.sub("", complaint.customer.name).split()) or None
