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


# Lane-packed counters: bit j of a gram's hash adds 1 to a 16-bit lane of one big integer,
# so summing all grams is a handful of integer additions per gram instead of 64.
_LANE = 16
_MAX_GRAMS = (1 << _LANE) - 1
_SPREAD = [[sum(((byte >> j) & 1) << (_LANE * (8 * pos + j)) for j in range(8)) for byte in range(256)]
           for pos in range(8)]


def simhash64(text: str, shingle: int = 2) -> int:
    words = normalized_words(text)
    if not words:
        return 0
    grams = [" ".join(words[i : i + shingle]) for i in range(max(1, len(words) - shingle + 1))][:_MAX_GRAMS]
    t0, t1, t2, t3, t4, t5, t6, t7 = _SPREAD
    acc = 0
    for gram in grams:
        b = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
        acc += t0[b[7]] + t1[b[6]] + t2[b[5]] + t3[b[4]] + t4[b[3]] + t5[b[2]] + t6[b[1]] + t7[b[0]]
    half, mask, value = len(grams), _MAX_GRAMS, 0
    for bit in range(64):
        if ((acc >> (_LANE * bit)) & mask) * 2 > half:
            value |= 1 << bit
    return value


def text_digest(text: str) -> str:
    return hashlib.sha1(" ".join(normalized_words(text)).encode("utf-8")).hexdigest()


def max_distance(similarity: float) -> int:
    """Bits two SimHashes may differ in and still count as ``similarity`` alike."""
    return max(0, int((1.0 - similarity) * 64))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
