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


def simhash64(text: str, shingle: int = 2) -> int:
    words = normalized_words(text)
    if not words:
        return 0
    grams = [" ".join(words[i : i + shingle]) for i in range(max(1, len(words) - shingle + 1))]
    weights = [0] * 64
    for gram in grams:
        h = int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "big")
        for bit in range(64):
            weights[bit] += 1 if h >> bit & 1 else -1
    value = 0
    for bit in range(64):
        if weights[bit] > 0:
            value |= 1 << bit
    return value


def text_digest(text: str) -> str:
    return hashlib.sha1(" ".join(normalized_words(text)).encode("utf-8")).hexdigest()


def max_distance(similarity: float) -> int:
    """Bits two SimHashes may differ in and still count as ``similarity`` alike."""
    return max(0, int((1.0 - similarity) * 64))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
