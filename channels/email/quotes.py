"""Separate a reply's new words from the quoted history and the signature below them.

Only clearly marked parts are separated: a reply header ("On ... wrote:", "-----Original
Message-----", an Outlook "From:/Sent:" block) followed by history, a trailing block of
"> " lines, and an RFC 3676 signature ("-- " alone on a line). Anything less certain stays
in the text: losing a customer's words is worse than keeping a quote.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:original message|original-nachricht|ursprüngliche nachricht|исходное сообщение|"
    r"wiadomość oryginalna|oryginalna wiadomość|message d'origine)\s*-{2,}\s*$", re.IGNORECASE)
#: "On Tue, 3 May 2012, Ann <a@b.c> wrote:" and its ru/pl/de/fr forms (possibly wrapped over two lines).
_WROTE = re.compile(r"^.{4,300}\b(?:wrote|schrieb|a écrit|napisał\(a\)|napisała?|pisze|пишет|написал\(а\)|написала?)\s*:\s*$",
                    re.IGNORECASE)
_WROTE_OPENING = re.compile(r"^\s*(?:on|am|le|w dniu|dnia)\s", re.IGNORECASE)
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|von|od|от|de)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(r"^\s*\*?(?:sent|date|gesendet|datum|wysłano|data|отправлено|дата|envoyé|to|an|do|кому|à)\s*:",
                          re.IGNORECASE)
_SIGNATURE = re.compile(r"^-- ?$")
_QUOTED = re.compile(r"^\s*>")


@dataclass(slots=True)
class SeparatedText:
    """The customer's new words and what was separated from them (both kept)."""

    text: str
    quoted: str = ""
    signature: str = ""


def separate(text: str, strip_signature: bool = False, max_signature_lines: int = 15) -> SeparatedText:
    """Split ``text``. The signature is always reported; it leaves the text only with
    ``strip_signature`` (it is the customer's own writing, often with their phone or account)."""
    lines = text.replace("\r\n", "\n").split("\n")
    cut = _history_start(lines)
    quoted = ""
    if cut is not None and _has_words(lines[:cut]):
        quoted = "\n".join(lines[cut:]).strip("\n")
        lines = lines[:cut]
    signature = ""
    for i in range(len(lines) - 1, -1, -1):
        if _SIGNATURE.match(lines[i]):
            tail = lines[i + 1 :]
            if _has_words(lines[:i]) and len([t for t in tail if t.strip()]) <= max_signature_lines:
                signature = "\n".join(tail).strip("\n")
                if strip_signature:
                    lines = lines[:i]
            break
    return SeparatedText("\n".join(lines).rstrip(), quoted, signature)


def _history_start(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if _ORIGINAL_MESSAGE.match(line):
            return i
        if _is_reply_header(line) or (i + 1 < len(lines) and len(line) > 20 and not _is_reply_header(lines[i + 1])
                                      and _is_reply_header(line + " " + lines[i + 1])):
            return i
        if _HEADER_FROM.match(line) and any(_HEADER_NEXT.match(n) for n in lines[i + 1 : i + 4]) \
                and (i == 0 or not lines[i - 1].strip() or set(lines[i - 1].strip()) <= set("-_*")):
            return i
    tail = len(lines)
    while tail > 0 and (not lines[tail - 1].strip() or _QUOTED.match(lines[tail - 1])):
        tail -= 1
    if tail < len(lines) and any(_QUOTED.match(x) for x in lines[tail:]):
        return tail
    return None


def _is_reply_header(line: str) -> bool:
    """A "wrote:" line that names a date or an address, or opens like "On ..." does."""
    if not line.rstrip().endswith(":"):  # most lines: the pattern would backtrack through every word first
        return False
    return _WROTE.match(line) is not None and (_WROTE_OPENING.match(line) is not None or re.search(r"\d|@", line) is not None)


def _has_words(lines: list[str]) -> bool:
    return any(re.search(r"\w", x) for x in lines)
