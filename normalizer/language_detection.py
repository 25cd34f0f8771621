"""Offline language detection with Lingua, restricted to the configured candidate languages.

Lingua was chosen because it is accurate on short texts (a one-line SMS, a subject) where
n-gram detectors trained on long documents guess, and it runs offline with its models in
the wheel. Restricting it to a few candidates makes it both faster and more accurate.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from functools import lru_cache

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

_LETTER = re.compile(r"[^\W\d_]")
#: Letters that, among the five languages below, only one of them writes.
_ONLY = {"ru": frozenset("ыэъЫЭЪ"), "uk": frozenset("іїєґІЇЄҐ"), "pl": frozenset("ąęłśźżńćĄĘŁŚŹŻŃĆ"),
         "de": frozenset("äöüßÄÖÜ")}
_SCRIPT = {"ru": "cyrillic", "uk": "cyrillic", "pl": "latin", "de": "latin"}
#: The candidates among which letters alone can decide.
_DECIDABLE = frozenset({"ru", "uk", "pl", "de", "en"})


#: Each byte of a UTF-8 text as "c" when it starts a character of U+0400..U+04FF
#: (Cyrillic), "l" when it is an ASCII letter or starts one of U+00C0..U+023F (Latin),
#: "." otherwise. U+0240..U+024F start with C9, like other characters: counted apart.
_SCRIPT_OF_BYTE = bytes(
    ord("c") if 0xD0 <= b <= 0xD3 else ord("l") if chr(b).isascii() and chr(b).isalpha() or 0xC3 <= b <= 0xC8 else ord(".")
    for b in range(256))
_LATIN_C9 = tuple(bytes([0xC9, tail]) for tail in range(0x80, 0x90))


def _letters_by_script(text: str) -> tuple[int, int]:
    """How many Cyrillic (U+0400..U+04FF) and Latin (a-z, A-Z, U+00C0..U+024F) characters
    ``text`` holds, counted in its UTF-8 bytes (each such character has one lead byte)."""
    data = text.encode("utf-8", "surrogatepass")
    classes = data.translate(_SCRIPT_OF_BYTE)
    latin = classes.count(b"l")
    if b"\xc9" in data:  # rare: searched for only when there
        latin += sum(data.count(pair) for pair in _LATIN_C9)
    return classes.count(b"c"), latin


def _by_letters(text: str, codes: tuple[str, ...]) -> str | None:
    """The language when the text's letters leave no doubt among ru, uk, pl, de and en: a
    text in one script holding letters that only one of the candidates writes (``ы`` is
    Russian, not Ukrainian; ``ł`` Polish, not German or English). This takes a few
    microseconds where the detector takes half a millisecond on a letter-sized text;
    anything else (plain ASCII, mixed scripts, letters of two languages) goes to it."""
    if text.isascii() or not set(codes) <= _DECIDABLE:  # ASCII: no letter of one language only
        return None
    cyrillic, latin = _letters_by_script(text)
    script = "cyrillic" if cyrillic > 9 * latin else "latin" if latin > 9 * cyrillic else None
    if script is None:
        return None
    found = [code for code in codes
             if _SCRIPT.get(code) == script and any(letter in text for letter in _ONLY[code])]
    return found[0] if len(found) == 1 else None


class UnknownLanguageError(ValueError):
    """A candidate language code the detector does not know."""


def to_language(code: str) -> Language:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code.lower()))
    except ValueError as exc:
        raise UnknownLanguageError(f"unknown language code {code!r} (ISO 639-1 expected)") from exc


@lru_cache(maxsize=8)
def detector(candidates: tuple[str, ...], accuracy: str = "high", min_relative_distance: float = 0.0) -> LanguageDetector:
    """One detector per configuration per process; models load on first use."""
    builder = LanguageDetectorBuilder.from_languages(*(to_language(c) for c in candidates))
    if accuracy == "low":
        builder = builder.with_low_accuracy_mode()
    if min_relative_distance:
        builder = builder.with_minimum_relative_distance(min_relative_distance)
    return builder.build()


@lru_cache(maxsize=8)
def preload(candidates: tuple[str, ...], accuracy: str = "high") -> threading.Thread:
    """Load the candidates' models in a background thread (once per process), so that the
    first message in each language is not held up on the event loop while they load."""
    def load() -> None:
        builder = LanguageDetectorBuilder.from_languages(*(to_language(c) for c in candidates))
        if accuracy == "low":
            builder = builder.with_low_accuracy_mode()
        builder.with_preloaded_language_models().build()

    thread = threading.Thread(target=load, name="lingua-preload", daemon=True)
    thread.start()
    return thread


def detect(text: str, candidates: Sequence[str], accuracy: str = "high", min_relative_distance: float = 0.0,
           max_chars: int = 2_000) -> str | None:
    """The ISO 639-1 code of ``text``'s language among ``candidates``, or None when the
    text has no letters or the detector is not sure enough."""
    text = text[:max_chars]
    if not _LETTER.search(text):
        return None
    codes = tuple(c.lower() for c in candidates)
    if len(codes) == 1:
        return codes[0]
    by_letters = _by_letters(text, codes)
    if by_letters is not None:
        return by_letters
    found = detector(codes, accuracy, min_relative_distance).detect_language_of(text)
    return found.iso_code_639_1.name.lower() if found is not None else None
