"""Urgency rules: multilingual word-form patterns that mark a complaint immediate or high.

A pattern is one or more terms joined by `` + ``; it matches when every term matches
words of one sentence, at most ``window`` words apart, in any order. A term is a regular
expression that must match whole words (``газ(а|у|ом)?`` matches «газом», not «газета»);
``@name`` inserts a shared term from the file's ``words``. Text and patterns are compared
case-insensitively, ``ё`` as ``е`` and Latin letters without accents (``czuc`` = ``czuć``),
so rules survive keyboards without Polish letters. Regex stems were chosen over a
lemmatiser: the dictionaries for five languages cost about 700 MB and seconds to load, and
Snowball has no Polish or Ukrainian stemmer.
"""
from __future__ import annotations

import bisect
import re
import re._constants as re_constants
import re._parser as re_parser
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gateway.config import ConfigError, compile_pattern, validate

LEVELS = ("normal", "high", "immediate")
RANK = {level: rank for rank, level in enumerate(LEVELS)}

_PATTERN_MAP = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string", "minLength": 1}}}
_RULE = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "level": {"enum": ["immediate", "high"]},
        "description": {"type": "string"},
        "enabled": {"type": "boolean"},
        "window": {"type": "integer", "minimum": 0},
        "patterns": _PATTERN_MAP,
        "unless": _PATTERN_MAP,
        "requires": {"type": "array", "items": _PATTERN_MAP},
    },
}
RULES_FILE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["rules"],
    "properties": {
        "window": {"type": "integer", "minimum": 0},
        "words": {"type": "object", "additionalProperties": {"type": "string"}},
        "rules": {"type": "array", "items": _RULE},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "rules_file": {"type": ["string", "null"]},
        "rules": {"type": "array", "items": _RULE},
        "window": {"type": "integer", "minimum": 0},
        "max_chars": {"type": "integer", "minimum": 1},
    },
}

#: Letters folded to others (no replacement is itself replaced).
_LATIN_EXTRA = {"ł": "l", "đ": "d", "ø": "o", "ё": "е", "’": "'", "ʼ": "'", "`": "'", "−": "-", "–": "-", "—": "-"}
#: Where sentences end: spaces after . ! ? … (the mark stays with its sentence), or newlines and
#: semicolons: the matches of ``[.!?…]\s+|[\n;]+``, written to begin with one character class,
#: which ``re`` skips ahead to (an alternation of classes is tried at every position: twice the time).
_SENTENCE_END = re.compile(r"[.!?…\n;](?:(?<=[.!?…])\s+|(?<=[\n;])[\n;]*)")
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_WORD_REF = re.compile(r"@(\w+)")
_WORD_CHAR = re.compile(r"\w")
#: Where a word starts: its first character (``word_at`` counts these).
_WORD_START = re.compile(r"(?<!\w)\w")


def _combining_marks() -> str:
    """A character class of every combining mark of the Basic Multilingual Plane."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x300, 0x10000):
        if unicodedata.combining(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_COMBINING = _combining_marks()
#: Accents (combining marks) after a Latin letter; Cyrillic keeps its own (``й``). The matches of
#: ``(?<=[\x00-\u024f])[marks]+``, written to begin with the marks (see ``_SENTENCE_END``).
_LATIN_ACCENTS = re.compile(f"[{_COMBINING}](?<=[\\x00-\\u024f][{_COMBINING}])[{_COMBINING}]*")


_MARKS = re.compile(f"[{_COMBINING}]")
#: Latin letters with accents, precomposed; and the letters ``_LATIN_EXTRA`` replaces.
_ACCENTED_LATIN = re.compile("[\u00c0-\u024f]")
_EXTRA_LETTERS = "".join(re.escape(c) for c in _LATIN_EXTRA)
_EXTRA = re.compile(f"[{_EXTRA_LETTERS}]")
#: What folding changes beyond case and spaces (a text without any of it folds as ``_SPACE.sub(" ", text.casefold())``).
_BEYOND_CASE = re.compile(f"[\u00c0-\u024f{_COMBINING}{_EXTRA_LETTERS}]")


#: A combining mark right after a space or a mark that ends sentences (the pattern begins with
#: the combining mark: see ``_SENTENCE_END``). Such a mark may begin a sentence (which, folded
#: alone, keeps it: no letter before it) or stand between the end of one and a space; a text
#: without any is folded whole, as its sentences would be one by one.
_MARK_AT_BREAK = re.compile(f"[{_COMBINING}](?<=[\\s;.!?…][{_COMBINING}])")


def _fold_letters(text: str) -> str:
    text = text.casefold()
    if text.isascii():
        return _SPACE.sub(" ", text)
    return _SPACE.sub(" ", _fold_beyond_case(text))


def _fold_beyond_case(text: str) -> str:
    """Accents off Latin letters and the letters of ``_LATIN_EXTRA`` replaced, in a casefolded text."""
    if _ACCENTED_LATIN.search(text) or _MARKS.search(text):  # most Cyrillic text has neither
        text = unicodedata.normalize("NFC", _LATIN_ACCENTS.sub("", unicodedata.normalize("NFD", text)))
    # one str.replace per letter found: str.translate looks every character up in a dict
    # (30-36 µs for 600 characters of Russian with one ё, against 2-4)
    for letter in set(_EXTRA.findall(text)):
        text = text.replace(letter, _LATIN_EXTRA[letter])
    return text


def fold(text: str) -> str:
    """Lower case, ``ё`` as ``е``, accents off Latin letters (Cyrillic ``й`` stays), one space."""
    return _fold_letters(text).strip()


def fold_pattern(term: str) -> str:
    """``fold`` for a regular expression: escapes such as ``\\D`` or ``\\S`` keep their case."""
    parts = re.split(r"(\\.)", term.strip())
    return "".join(part if i % 2 else _fold_letters(part) for i, part in enumerate(parts))


class Sentence:
    """A folded sentence; where its words start is worked out only when an offset has to be
    turned into a word number (for the few patterns tried sentence by sentence)."""

    __slots__ = ("text", "_word_starts")

    def __init__(self, text: str) -> None:
        self.text = text
        self._word_starts: list[int] | None = None

    @classmethod
    def of(cls, text: str) -> Sentence:
        return cls(fold(text))

    def word_at(self, offset: int) -> int:
        if self._word_starts is None:
            self._word_starts = [m.start() for m in _WORD.finditer(self.text)]
        return max(0, bisect.bisect_right(self._word_starts, offset) - 1)


def split_sentences(text: str) -> list[Sentence]:
    return _split_folded(*_folded(text))


def _folded(text: str) -> tuple[str, bool]:
    """The text casefolded (folded whole, accents off, when that gives what folding each
    sentence alone gives), and whether it is folded whole: then its words are its
    sentences' words; otherwise ``_split_folded`` folds each sentence alone."""
    folded = text.casefold()  # folding twice changes nothing: the sentences fold as they would alone
    whole = _BEYOND_CASE.search(folded) is None  # most texts: folding is lower case and one space
    if not whole and _MARK_AT_BREAK.search(folded) is None:
        folded, whole = _fold_beyond_case(folded), True
    return folded, whole


def _split_folded(folded: str, whole: bool) -> list[Sentence]:
    parts, start = [], 0
    for end in _SENTENCE_END.finditer(folded):
        cut = end.start() + 1 if folded[end.start()] in ".!?…" else end.start()
        parts.append(folded[start:cut])
        start = end.end()
    parts.append(folded[start:])
    if whole:
        return [Sentence(sentence) for part in parts if (sentence := " ".join(part.split()))]
    return [Sentence.of(part) for part in parts if part.strip()]


#: What lets a term's match depend on text around it: anchors, lookaround, word boundaries.
_CONTEXT = re.compile(r"\(\?<|\(\?=|\(\?!|\\[AZbB]|[\^$]")


@lru_cache(maxsize=4096)
def _found_in_joined_text(term: re.Pattern[str]) -> bool:
    """Whether a match of ``term`` in a sentence is always a match in the sentences joined
    by newlines: true when only the word checks every term gets look beyond its words
    (a newline is no word character, like the ends of a sentence)."""
    inner = term.pattern.removeprefix(r"(?<!\w)(?:").removesuffix(r")(?!\w)")
    return _CONTEXT.search(inner.replace("[^", "[")) is None


def _always(pattern: Pattern) -> bool:
    return True


class SentenceIndex:
    """The sentences of one text joined by newlines: one look per term over the whole
    text rules out the patterns that cannot match any sentence (most patterns, for most
    complaints) before they are tried sentence by sentence. ``WordTerms`` answers for most
    terms from the text's words alone; the others are searched once."""

    def __init__(self, sentences: list[Sentence], words: WordTerms | None = None,
                 gates_open: frozenset[int] | None = None) -> None:
        """``gates_open``: the gates the sentences' words open, when already known."""
        self.text = "\n".join(s.text for s in sentences)
        #: per term (by ``id``: hashing a compiled pattern hashes its whole program, about 1 µs)
        self._found: dict[int, bool] = {}
        self._words = words
        if gates_open is None:
            gates_open = words.gates_in(self.text) if words is not None else frozenset()
        self.gates_open = gates_open

    def possible(self, pattern: Pattern) -> bool:
        words = self._words
        for i, term in enumerate(pattern.terms):
            key = id(term)
            found = self._found.get(key)
            if found is None:
                plan = words.plans.get(key) if words is not None else None
                if plan is not None and not plan[0].isdisjoint(self.gates_open):
                    found = True  # an alternative that is one whole word is in the text
                elif plan is not None and (plan[1].isdisjoint(self.gates_open)
                                           or not any(alternative <= self.gates_open for alternative in plan[2])):
                    found = False  # every other alternative needs a whole word the text does not hold
                else:
                    joinable = pattern.joinable[i] if pattern.joinable else _found_in_joined_text(term)
                    found = not joinable or (
                        bool(_word_start_spans(pattern.scans[i], self.text, first=True)) if pattern.scans
                        else term.search(self.text) is not None)
                self._found[key] = found
            if not found:
                return False
        return True


_NO_GATES: frozenset[int] = frozenset()


class WordTerms:
    """Most terms are alternatives that each begin with one whole word: ``нет``,
    ``отключ\\w*``, ``не работает`` (which begins with ``не``). Such a term can only match a
    text that holds one of those first words (its *gates*); a term with an alternative that
    is a single word matches when that word is there. Which gates a word opens is learned
    once per distinct word (trying only the gates that can begin with its first letter),
    then it is a dictionary look-up: the terms of most complaints are ruled out without one
    regular-expression search. Numbers are not remembered: each complaint brings its own."""

    def __init__(self, terms: list[re.Pattern[str]], max_words: int = 200_000) -> None:
        self.gates: list[re.Pattern[str]] = []
        gate_ids: dict[str, int] = {}
        #: The terms, kept alive: the look-ups below are by ``id(term)`` (see ``SentenceIndex``).
        self.terms = list(dict.fromkeys(terms))
        #: id(term) -> what a text must hold for it to match: (the gates of its alternatives
        #: that are one whole word and nothing else; the first words of the others; per other
        #: alternative, the gates of every whole word it needs, not only its first). One gate
        #: of the first two it needs in any case.
        self.plans: dict[int, tuple[frozenset[int], frozenset[int], tuple[frozenset[int], ...]]] = {}

        def gate(source: str) -> int:
            return gate_ids.setdefault(source, len(gate_ids))

        for term in self.terms:
            gates = _gates_of(_inner(term))
            words = _words_of_alternatives(_inner(term))
            if gates is None or words is None:
                continue  # some alternative does not begin with one whole word
            others = [i for i, (_, whole) in enumerate(gates) if not whole]
            self.plans[id(term)] = (frozenset(gate(first) for first, whole in gates if whole),
                                    frozenset(gate(gates[i][0]) for i in others),
                                    tuple(frozenset(gate(word) for word in words[i]) for i in others))
        self.gates = [re.compile(source) for source in gate_ids]
        self.max_words = max_words
        self._by_first: dict[str, list[int]] = {}
        self._any_first: list[int] = []
        for source, i in gate_ids.items():
            first = _first_letters(source)
            if first is None:
                self._any_first.append(i)
            else:
                for ch in first:
                    self._by_first.setdefault(ch, []).append(i)
        self._words: dict[str, frozenset[int]] = {}

    def of_word(self, word: str) -> frozenset[int]:
        known = self._words.get(word)
        if known is None:
            candidates = self._by_first.get(word[0], ())
            known = frozenset(i for i in (*candidates, *self._any_first) if self.gates[i].fullmatch(word)) or _NO_GATES
            if not word[0].isdigit():  # numbers (contracts, dates, amounts) seldom come again: not remembered
                if len(self._words) >= self.max_words:
                    self._words.clear()
                self._words[word] = known
        return known

    def gates_in(self, text: str) -> frozenset[int]:
        opened: set[int] = set()
        known_words = self._words
        for word in set(_WORD.findall(text)):
            known = known_words.get(word)  # most words are known and open no gate
            if known is None:
                known = self.of_word(word)
            if known:
                opened |= known
        return frozenset(opened)


def _inner(term: re.Pattern[str]) -> str:
    return term.pattern.removeprefix(r"(?<!\w)(?:").removesuffix(r")(?!\w)")


def _split_top_level(source: str) -> tuple[list[str], list[tuple[int, int]], bool]:
    """``source`` split at ``|`` outside groups and classes; where it certainly matches a
    character that is no word character, outside groups (the spans of a literal space or
    ``-``, or of a class of such characters only, none of them repeated or optional); and
    whether one group encloses the whole of it. ValueError if it is not balanced."""
    parts, breaks, depth, start, i, in_class = [], [], 0, 0, 0, False
    first_close: int | None = None  # where the group opened first closes
    class_start = 0
    while i < len(source):
        ch = source[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
            if not in_class and depth == 0 and _non_word_class(source[class_start + 1:i]) and not _quantified(source, i + 1):
                breaks.append((class_start, i + 1))
        elif ch == "[":
            in_class, class_start = True, i
            if source[i + 1:i + 2] == "]" or source[i + 1:i + 3] == "^]":
                i += 2 if source[i + 1] == "]" else 3
                continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced")
            if depth == 0 and first_close is None:
                first_close = i
        elif depth == 0 and ch == "|":
            parts.append(source[start:i])
            start = i + 1
        elif depth == 0 and ch in " -" and not _quantified(source, i + 1):
            breaks.append((i, i + 1))
        i += 1
    if depth or in_class:
        raise ValueError("unbalanced")
    parts.append(source[start:])
    return parts, sorted(breaks), source.startswith("(") and first_close == len(source) - 1


def _quantified(source: str, i: int) -> bool:
    """Whether what ends just before ``i`` is repeated or optional."""
    return source[i:i + 1] in ("?", "*", "+", "{")


def _non_word_class(members: str) -> bool:
    """Whether a class with these members (``[`` and ``]`` off) matches only characters that
    are no word characters: plain members, no negation, escape or range (a ``-`` only first or last)."""
    return (bool(members) and not members.startswith("^") and "\\" not in members and "-" not in members[1:-1]
            and not any(_WORD_CHAR.match(ch) for ch in members))


def _alternatives(source: str) -> list[str]:
    """The top-level alternatives of ``source``; a group around the whole is looked into."""
    parts, _, encloses = _split_top_level(source)
    if len(parts) == 1 and encloses:
        if source.startswith("(?:"):
            return _alternatives(source[3:-1])
        if not source.startswith("(?"):  # a plain group; not a look-around or a named group
            return _alternatives(source[1:-1])
    return parts


def _stretches_of(source: str) -> list[list[str]] | None:
    """Per top-level alternative of a term, its stretches between the certain breaks (see
    ``_split_top_level``), empty ones included: the first is where its first word must be.
    None when the term is not balanced."""
    try:
        result = []
        for alternative in _alternatives(source):
            _, breaks, _ = _split_top_level(alternative)
            edges = [0, *(edge for span in breaks for edge in span), len(alternative)]
            result.append([alternative[a:b] for a, b in zip(edges[::2], edges[1::2])])
    except ValueError:
        return None
    return result


def _gates_of(source: str) -> list[tuple[str, bool]] | None:
    """The gates of a term: per alternative, its first stretch, a one-word regular expression
    that must match a whole word of any text the alternative matches, and whether it is the
    whole alternative. None when some alternative does not begin with one whole word."""
    stretches = _stretches_of(source)
    if stretches is None or not all(_one_word(alternative[0]) for alternative in stretches):
        return None
    return [(alternative[0], len(alternative) == 1) for alternative in stretches]


def _words_of_alternatives(source: str) -> list[list[str]] | None:
    """Per top-level alternative of a term, its stretches that are one word: each matches a
    whole word of any text the alternative matches (a break, the term's start or its end on
    either side). None when some alternative has no such stretch."""
    stretches = _stretches_of(source)
    if stretches is None:
        return None
    words = [[stretch for stretch in alternative if _one_word(stretch)] for alternative in stretches]
    return None if any(not found for found in words) else words


def _one_word(source: str) -> bool:
    """Whether every match of ``source`` is one or more word characters and nothing else
    (judged from the parsed pattern; anything unusual is "no")."""
    try:
        parsed = re_parser.parse(source)
        return parsed.getwidth()[0] >= 1 and _only_word_chars(parsed)
    except Exception:  # not a pattern on its own, or a construct judged differently
        return False


def _is_word_char(code: int) -> bool:
    return _WORD_CHAR.match(chr(code)) is not None


def _only_word_chars(items: Any) -> bool:
    for op, av in items:
        if op is re_constants.LITERAL:
            if not _is_word_char(av):
                return False
        elif op is re_constants.IN:
            for kind, value in av:
                if kind is re_constants.LITERAL:
                    if not _is_word_char(value):
                        return False
                elif kind is re_constants.RANGE:
                    low, high = value
                    if high - low > 4096 or not all(_is_word_char(c) for c in range(low, high + 1)):
                        return False
                elif kind is re_constants.CATEGORY:
                    if value not in (re_constants.CATEGORY_WORD, re_constants.CATEGORY_DIGIT):
                        return False
                else:  # NEGATE and anything else
                    return False
        elif op is re_constants.BRANCH:
            if not all(_only_word_chars(branch) for branch in av[1]):
                return False
        elif op is re_constants.SUBPATTERN:
            if not _only_word_chars(av[3]):
                return False
        elif op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT, re_constants.POSSESSIVE_REPEAT):
            if not _only_word_chars(av[2]):
                return False
        elif op is re_constants.ATOMIC_GROUP:
            if not _only_word_chars(av):
                return False
        else:  # ANY, NOT_LITERAL, AT, ASSERT, GROUPREF, ...: not judged
            return False
    return True


def _first_letters(pattern: str) -> frozenset[str] | None:
    """The letters a match of ``pattern`` can begin with, or None when that is not known."""
    try:
        parsed = re_parser.parse(pattern)
        if parsed.state.flags & re.IGNORECASE:
            return None
        return _first_of_sequence(list(parsed))
    except Exception:
        return None


def _first_of_sequence(items: list[Any]) -> frozenset[str] | None:
    letters: set[str] = set()
    for op, av in items:
        first: frozenset[str] | None
        if op is re_constants.LITERAL:
            first, min_width = frozenset(chr(av)), 1
        elif op is re_constants.IN:
            if not all(kind is re_constants.LITERAL for kind, _ in av):
                return None
            first, min_width = frozenset(chr(value) for _, value in av), 1
        elif op is re_constants.BRANCH:
            firsts = [_first_of_sequence(list(branch)) for branch in av[1]]
            if any(f is None for f in firsts):
                return None
            first = frozenset().union(*firsts)  # type: ignore[arg-type]
            min_width = min(re_parser.SubPattern(branch.state, list(branch)).getwidth()[0] for branch in av[1])
        elif op is re_constants.SUBPATTERN:
            first, min_width = _first_of_sequence(list(av[3])), av[3].getwidth()[0]
        elif op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT, re_constants.POSSESSIVE_REPEAT):
            first, min_width = _first_of_sequence(list(av[2])), av[0] * av[2].getwidth()[0]
        else:
            return None
        if first is None:
            return None
        letters |= first
        if min_width > 0:
            return frozenset(letters)
    return None  # the whole pattern can match nothing: no first letter to rely on


def _word_start_spans(scan: re.Pattern[str], text: str, first: bool = False) -> list[tuple[int, int]]:
    r"""The spans of the matches of ``scan`` (a term without its leading ``(?<!\w)``) in
    ``text`` that start a word (only the first with ``first``): the spans of the term's own
    ``finditer``, found faster, because ``re`` skips to the possible first letters only in a
    pattern that does not begin with a lookbehind. At the same start both patterns try the
    same alternatives in the same order, so each match is the term's, end included."""
    spans: list[tuple[int, int]] = []
    pos, end = 0, len(text)
    while pos <= end and (m := scan.search(text, pos)) is not None:  # past the end, search starts at the end again
        start, stop = m.span()
        if not start or not _WORD_CHAR.match(text, start - 1):
            spans.append((start, stop))
            if first:
                break
            pos = stop if stop > start else stop + 1  # after an empty match, finditer moves on one
        else:
            pos = start + 1
    return spans


def _word_number(position: tuple[int, int, int]) -> int:
    return position[0]


def _first_within(positions: list[list[tuple[int, int, int]]], window: int) -> list[tuple[int, int, int]] | None:
    """The first combination of one position per term, in ``itertools.product``'s order,
    whose word numbers (each position's first item; in order within each term, as a
    sentence's matches come) lie at most ``window`` apart. A partial combination already
    wider than that is not extended (four terms of 32 matches each: the product's million
    combinations took half a second for one sentence), and of a term's many positions only
    those within ``window`` of the words chosen so far are looked at, found by bisection
    (a term that matches hundreds of times in a long sentence costs a few tries per match)."""
    chosen: list[tuple[int, int, int]] = []

    def extend(level: int, low: int, high: int) -> bool:
        if level == len(positions):
            return True
        found = positions[level]
        if level and len(found) > 8:
            found = found[bisect.bisect_left(found, high - window, key=_word_number):
                          bisect.bisect_right(found, low + window, key=_word_number)]
        for position in found:
            lo, hi = min(low, position[0]), max(high, position[0])
            if hi - lo <= window:
                chosen.append(position)
                if extend(level + 1, lo, hi):
                    return True
                chosen.pop()
        return False

    return chosen if extend(0, sys.maxsize, -1) else None  # word numbers are 0 or more


@dataclass(frozen=True, slots=True)
class Pattern:
    """Terms that must all match one sentence within ``window`` words."""

    source: str
    terms: tuple[re.Pattern[str], ...]
    window: int
    #: The terms without their leading ``(?<!\w)``, for the quick check (see ``_word_start_spans``).
    scans: tuple[re.Pattern[str], ...] = ()
    #: Per term, ``_found_in_joined_text`` worked out once.
    joinable: tuple[bool, ...] = ()

    @classmethod
    def compile(cls, source: str, window: int, words: dict[str, str], where: str) -> Pattern:
        terms = []
        for raw in re.split(r"\s+\+\s+", source.strip()):
            def expand(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in words:
                    raise ConfigError(f"{where}: pattern {source!r} uses @{name}, which is not in words")
                return f"(?:{words[name]})"

            term = _WORD_REF.sub(expand, fold_pattern(raw))
            # refused: a term that does not compile or nests repeats ((\w+\s?)+газ: exponential time)
            compile_pattern(term, f"{where}: pattern {source!r}: the term")
            if re_parser.parse(term).getwidth()[0] == 0:  # such a term matches only between two non-word characters
                raise ConfigError(f"{where}: pattern {source!r}: the term '{raw.strip()}' can match no word at all; "
                                  "write the pattern with and without it instead")
            terms.append(re.compile(rf"(?<!\w)(?:{term})(?!\w)"))
        return cls(source, tuple(terms), window, tuple(re.compile(t.pattern.removeprefix(r"(?<!\w)")) for t in terms),
                   tuple(_found_in_joined_text(t) for t in terms))

    def find(self, sentence: Sentence) -> str | None:
        """The matched stretch of the sentence, or None."""
        text = sentence.text
        if len(self.terms) == 1:  # any match is within the window: the first one is the answer
            if self.scans:
                found = _word_start_spans(self.scans[0], text, first=True)
                return text[found[0][0]:found[0][1]] if found else None
            m = self.terms[0].search(text)
            return None if m is None else text[m.start():m.end()]
        spans: list[list[tuple[int, int]]] = []
        for i, term in enumerate(self.terms):  # most sentences miss a term: the first missing one ends it
            found = _word_start_spans(self.scans[i], text) if self.scans else [m.span() for m in term.finditer(text)]
            if not found:
                return None
            spans.append(found)
        starts = sorted(found[0][0] for found in spans)
        if all(len(found) == 1 for found in spans) and _WORD_START.match(text, starts[0]):
            # the usual case: one match a term, the first at a word's start; the words from the
            # first match to the last are the word starts after the first up to the last
            if len(_WORD_START.findall(text, starts[0] + 1, starts[-1] + 1)) > self.window:
                return None
            return text[starts[0]: max(found[0][1] for found in spans)]
        positions = [[(sentence.word_at(start), start, end) for start, end in found] for found in spans]
        combination = _first_within(positions, self.window)
        if combination is None:
            return None
        return text[min(p[1] for p in combination): max(p[2] for p in combination)]


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: str
    level: str
    language: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class UrgencyRule:
    """One named rule: ``patterns`` (per language) fire it unless an ``unless`` pattern
    matches the same sentence; every group in ``requires`` must match somewhere too."""

    name: str
    level: str
    description: str
    patterns: tuple[tuple[str, Pattern], ...]
    unless: tuple[Pattern, ...]
    requires: tuple[tuple[Pattern, ...], ...]

    def match(self, sentences: list[Sentence], index: SentenceIndex | None = None,
              candidates: Sequence[tuple[str, Pattern]] | None = None) -> RuleMatch | None:
        """``candidates``: the patterns worth trying, in file order (default: all of them)."""
        possible = index.possible if index is not None else _always
        patterns = [(language, p) for language, p in (self.patterns if candidates is None else candidates) if possible(p)]
        if not patterns:
            return None
        unless = [p for p in self.unless if possible(p)]
        hit: RuleMatch | None = None
        for sentence in sentences:
            if any(p.find(sentence) for p in unless):
                continue
            for language, pattern in patterns:
                excerpt = pattern.find(sentence)
                if excerpt is not None:
                    hit = RuleMatch(self.name, self.level, language, excerpt)
                    break
            if hit:
                break
        if hit is None:
            return None
        for group in self.requires:
            if not any(p.find(s) for p in group if possible(p) for s in sentences):
                return None
        return hit


class UrgencyRules:
    """The compiled rules; ``classify(text)`` returns the highest-level match, the first
    rule in file order winning among equals."""

    def __init__(self, rules: list[UrgencyRule], max_chars: int = 10_000) -> None:
        self.rules = sorted(rules, key=lambda r: -RANK[r.level])  # stable: file order kept per level
        self.max_chars = max_chars
        terms = [term for rule in self.rules
                 for pattern in (*(p for _, p in rule.patterns), *rule.unless, *(p for g in rule.requires for p in g))
                 for term in pattern.terms]
        self.words = WordTerms(terms)
        #: per gate, the (rule, pattern) numbers it lets in; per rule, the patterns no gate keeps out
        self._let_in: dict[int, list[tuple[int, int]]] = {}
        self._ungated: dict[int, list[int]] = {}
        for r, rule in enumerate(self.rules):
            for i, (_, pattern) in enumerate(rule.patterns):
                needed = self._gates_of_pattern(pattern)
                if needed is None:
                    self._ungated.setdefault(r, []).append(i)
                for gate in needed or ():
                    self._let_in.setdefault(gate, []).append((r, i))

    def _gates_of_pattern(self, pattern: Pattern) -> frozenset[int] | None:
        plans = self.words.plans
        needed = [plans[id(t)][0] | plans[id(t)][1] for t in pattern.terms if id(t) in plans]
        return min(needed, key=len) if needed else None

    def classify(self, text: str) -> RuleMatch | None:
        folded, whole = _folded(text[: self.max_chars])
        gates_open = None
        if whole:  # the text's words are its sentences': a text no pattern can match is not cut
            gates_open = self.words.gates_in(folded)
            if not self._ungated and all(gate not in self._let_in for gate in gates_open):
                return None
        sentences = _split_folded(folded, whole)
        index = SentenceIndex(sentences, self.words, gates_open)
        # a pattern can only match when one of the gates its rarest gated term needs is open
        chosen: dict[int, set[int]] = {r: set(ungated) for r, ungated in self._ungated.items()}
        for gate in index.gates_open:
            for r, i in self._let_in.get(gate, ()):
                if r in chosen:
                    chosen[r].add(i)
                else:
                    chosen[r] = {i}
        best: RuleMatch | None = None
        for r in sorted(chosen):  # the rules' order: by level, then file order
            rule = self.rules[r]
            if best is not None and RANK[rule.level] <= RANK[best.level]:
                break
            found = rule.match(sentences, index, [rule.patterns[i] for i in sorted(chosen[r])])
            if found is not None:
                best = found
        return best

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    @classmethod
    def from_config(cls, section: dict[str, Any] | None = None) -> UrgencyRules:
        """``rules_file`` (default: the packaged rules) plus inline ``rules``: an inline rule
        with a file rule's name replaces it, ``enabled: false`` switches one off."""
        section = section or {}
        validate(section, SCHEMA, prefix="normalizer.urgency")
        path = section.get("rules_file")
        data = _load_file(path) if path else _packaged()
        window = int(section.get("window", data.get("window", 6)))
        by_name: dict[str, dict[str, Any]] = {r["name"]: r for r in data["rules"]}
        for rule in section.get("rules") or []:
            by_name[rule["name"]] = {**by_name.get(rule["name"], {}), **rule}
        words = {name: fold_pattern(term) for name, term in (data.get("words") or {}).items()}
        compiled = [_compile(spec, window, words) for spec in by_name.values() if spec.get("enabled", True)]
        return cls(compiled, int(section.get("max_chars", 10_000)))

    @classmethod
    def default(cls) -> UrgencyRules:
        return _default_rules()


def _compile(spec: dict[str, Any], window: int, words: dict[str, str]) -> UrgencyRule:
    name = spec["name"]
    where = f"normalizer.urgency rule {name!r}"
    if "level" not in spec or not spec.get("patterns"):
        raise ConfigError(f"{where}: a rule needs a level and patterns")
    window = int(spec.get("window", window))

    def patterns(mapping: dict[str, list[str]]) -> list[tuple[str, Pattern]]:
        return [(lang, Pattern.compile(p, window, words, where)) for lang, items in mapping.items() for p in items]

    return UrgencyRule(
        name=name, level=spec["level"], description=spec.get("description", ""),
        patterns=tuple(patterns(spec["patterns"])),
        unless=tuple(p for _, p in patterns(spec.get("unless") or {})),
        requires=tuple(tuple(p for _, p in patterns(group)) for group in spec.get("requires") or []),
    )


def _load_file(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"normalizer.urgency.rules_file: {path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"normalizer.urgency.rules_file: {path}: not valid YAML: {exc}") from exc
    validate(data if isinstance(data, dict) else {}, RULES_FILE_SCHEMA, prefix=f"rules file {path}")
    return data  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _packaged() -> dict[str, Any]:
    text = resources.files("normalizer").joinpath("urgency_rules.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    validate(data, RULES_FILE_SCHEMA, prefix="normalizer/urgency_rules.yaml")
    return data  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _default_rules() -> UrgencyRules:
    return UrgencyRules.from_config({})
