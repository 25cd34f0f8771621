"""Text fingerprints for repeat detection: a 64-bit SimHash of word shingles.

Two texts whose SimHashes differ in few bits are near-identical. Comparing a new message
with a customer's recent messages costs one XOR and a bit count per candidate, whatever
the number of customers or complaints.
"""
from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable

_WORD = re.compile(r"\w+", re.UNICODE)


def _compiled() -> Callable[[list[str]], int] | None:
    try:
        from gateway.registry._simhash import simhash_of_word_pairs as compiled
    except ImportError:  # no compiler where the gateway was installed: the values come from Python
        return None
    return compiled


#: The SimHash of word pairs compiled (``_simhash.c``, the same values): None where it was not built.
simhash_of_word_pairs = _compiled()


def normalized_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text or "")]


#: For bit j of a byte: a translation table that maps every byte to 1 if its bit j is set.
_BIT = [bytes((value >> j) & 1 for value in range(256)) for j in range(8)]


#: Up to this many word pairs, the bits are counted with bit-sliced counters (short texts:
#: web forms, messages); beyond, column by column (long mails).
_SLICED_MAX = 64


def fingerprint(text: str, attachment_digests: list[str]) -> tuple[int, str]:
    """The text's SimHash, and the SHA-1 of its words and its attachments' digests (an
    exact copy has the same one), from one pass over the text's words."""
    words = normalized_words(text)
    extra = normalized_words(",".join(sorted(attachment_digests)))
    return simhash_of_words(words), hashlib.sha1(" ".join(words + extra).encode("utf-8")).hexdigest()


def simhash64(text: str, shingle: int = 2) -> int:
    """Bit i of the result is set when more than half of the word pairs' 64-bit BLAKE2b
    hashes (read as big-endian numbers) have bit i set."""
    return simhash_of_words(normalized_words(text), shingle)


def simhash_of_words(words: list[str], shingle: int = 2) -> int:
    """``simhash64`` of a text whose ``normalized_words`` are ``words``."""
    if shingle == 2 and simhash_of_word_pairs is not None:
        return simhash_of_word_pairs(words)
    return simhash_in_python(words, shingle)


def simhash_in_python(words: list[str], shingle: int = 2) -> int:
    """``simhash_of_words`` computed in Python: one BLAKE2b object per word pair."""
    if not words:
        return 0
    if shingle == 2 and len(words) > 1:  # the usual case, built without slicing
        grams = [f"{a} {b}" for a, b in zip(words, words[1:])]
    else:
        grams = [" ".join(words[i : i + shingle]) for i in range(max(1, len(words) - shingle + 1))]
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(gram.encode(), digest_size=8).digest() for gram in grams])
    if len(grams) <= _SLICED_MAX:
        return _majority_sliced(struct.unpack(f">{len(grams)}Q", digests))
    return _majority_by_column(digests, len(grams))


def _majority_sliced(hashes: tuple[int, ...]) -> int:
    """The 64 bits' counts kept as bit planes (plane k holds bit k of every count), each
    hash added with a ripple carry: a few integer operations per hash, whatever the bits."""
    planes = [0] * len(hashes).bit_length()
    for carry in hashes:
        for k, plane in enumerate(planes):
            planes[k], carry = plane ^ carry, plane & carry
            if not carry:
                break
    # the bits whose count reaches more than half: compare every count with the threshold
    # at once, from the highest plane down
    threshold, above, equal = len(hashes) // 2 + 1, 0, (1 << 64) - 1
    for k in range(len(planes) - 1, -1, -1):
        if threshold >> k & 1:
            equal &= planes[k]
        else:
            above |= equal & planes[k]
            equal &= ~planes[k]
    return above | equal


def _majority_by_column(digests: bytes, count: int) -> int:
    """The bits counted column by column over all the hashes at once (a slice, a byte
    translation and a count, in C)."""
    value = 0
    for position in range(8):  # byte 0 of a digest holds bits 63..56
        column = digests[position::8]
        for j in range(8):
            if column.translate(_BIT[j]).count(1) * 2 > count:
                value |= 1 << (8 * (7 - position) + j)
    return value


def max_distance(similarity: float) -> int:
    """Bits two SimHashes may differ in and still count as ``similarity`` alike."""
    return max(0, int((1.0 - similarity) * 64))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
