"""Text fingerprints for repeat detection: a 64-bit SimHash of word shingles.

Two texts whose SimHashes differ in few bits are near-identical. Comparing a new message
with a customer's recent messages costs one XOR and a bit count per candidate, whatever
the number of customers or complaints.
"""
from __future__ import annotations

import hashlib
import re

_WORD = re.compile(r"\w+", re.UNICODE)


def normalized_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text or "")]


#: For bit j of a byte: a translation table that maps every byte to 1 if its bit j is set.
_BIT = [bytes((value >> j) & 1 for value in range(256)) for j in range(8)]


def simhash64(text: str, shingle: int = 2) -> int:
    """Bit i of the result is set when more than half of the word pairs' 64-bit BLAKE2b
    hashes (read as big-endian numbers) have bit i set. The bits are counted column by
    column over all the hashes at once (a slice, a byte translation and a count, in C)."""
    words = normalized_words(text)
    if not words:
        return 0
    grams = [" ".join(words[i : i + shingle]) for i in range(max(1, len(words) - shingle + 1))]
    digests = b"".join([hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest() for gram in grams])
    half, value = len(grams), 0
    for position in range(8):  # byte 0 of a digest holds bits 63..56
        column = digests[position::8]
        for j in range(8):
            if column.translate(_BIT[j]).count(1) * 2 > half:
                value |= 1 << (8 * (7 - position) + j)
    return value


def text_digest(text: str) -> str:
    return hashlib.sha1(" ".join(normalized_words(text)).encode("utf-8")).hexdigest()


def max_distance(similarity: float) -> int:
    """Bits two SimHashes may differ in and still count as ``similarity`` alike."""
    return max(0, int((1.0 - similarity) * 64))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
