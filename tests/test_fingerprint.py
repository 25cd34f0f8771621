"""The repeat detector's SimHash: the compiled one and the bit-sliced Python one equal the
textbook definition."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.registry import fingerprint as fingerprint_module
from gateway.registry.fingerprint import fingerprint, hamming, max_distance, normalized_words, simhash64, simhash_in_python


def textbook_simhash(text: str) -> int:
    return textbook_of_words(normalized_words(text))


def textbook_of_words(words: list[str]) -> int:
    if not words:
        return 0
    grams = [" ".join(words[i : i + 2]) for i in range(max(1, len(words) - 1))]
    weights = [0] * 64
    for gram in grams:
        h = int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "big")
        for bit in range(64):
            weights[bit] += 1 if h >> bit & 1 else -1
    return sum(1 << bit for bit in range(64) if weights[bit] > 0)


@settings(max_examples=300)
@given(st.lists(st.sampled_from("нет интернета связь счёт brak internetu bill line router 42 x".split()), max_size=80))
def test_fast_simhash_equals_textbook(words: list[str]) -> None:
    text = " ".join(words)
    assert simhash64(text) == textbook_simhash(text)


def test_the_compiled_simhash_is_built_and_used() -> None:
    # the install compiles it; were it missing, every message would pay the Python one
    assert fingerprint_module.simhash_of_word_pairs is not None
    assert fingerprint_module.simhash_of_word_pairs.__module__ == "gateway.registry._simhash"


@settings(max_examples=500)
@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=140), max_size=90))
def test_the_compiled_simhash_equals_the_python_one_on_any_words(words: list[str]) -> None:
    assert fingerprint_module.simhash_of_word_pairs is not None
    assert fingerprint_module.simhash_of_word_pairs(words) == simhash_in_python(words) == textbook_of_words(words)


def test_word_pairs_of_one_block_and_just_over_it_hash_as_hashlib_does() -> None:
    # BLAKE2b works on 128-byte blocks: a pair of 127, 128 and 129 bytes (and of two blocks)
    assert fingerprint_module.simhash_of_word_pairs is not None
    for total in (0, 1, 127, 128, 129, 255, 256, 257, 1000):
        first = "a" * (total // 2)
        for words in ([first, "b" * max(0, total - len(first) - 1)], ["ж" * (total // 2)], ["x" * total]):
            assert fingerprint_module.simhash_of_word_pairs(words) == textbook_of_words(words), (total, words)


def test_the_compiled_simhash_takes_only_a_list_of_str() -> None:
    assert fingerprint_module.simhash_of_word_pairs is not None
    with pytest.raises(TypeError):
        fingerprint_module.simhash_of_word_pairs(("a", "b"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fingerprint_module.simhash_of_word_pairs(["a", b"b"])  # type: ignore[list-item]


def test_near_identical_texts_are_close_and_different_ones_far() -> None:
    a = simhash64("Третий день нет интернета в доме на Ленина 5, роутер мигает красным")
    b = simhash64("Третий день нет интернета в доме на Ленина 5, роутер мигает красным!!!")
    c = simhash64("Прошу пересчитать абонентскую плату за февраль, списали дважды")
    assert hamming(a, b) == 0
    assert hamming(a, c) > max_distance(0.9)
    assert max_distance(0.9) == 6 and max_distance(1.0) == 0


@settings(max_examples=200)
@given(st.lists(st.sampled_from("нет интернета счёт brak bill 42 x_y _ \x00 , .".split(" ")), max_size=20),
       st.lists(st.text("0123456789abcdef", max_size=8), max_size=3))
def test_fingerprint_is_the_simhash_and_the_digest_of_words_and_attachments(words: list[str], shas: list[str]) -> None:
    text = " ".join(words)
    # the digest as registries store it: the words of the text and of the attachments' digests
    stored = hashlib.sha1(" ".join(normalized_words(text + "\x00" + ",".join(sorted(shas)))).encode("utf-8")).hexdigest()
    assert fingerprint(text, shas) == (simhash64(text), stored)
