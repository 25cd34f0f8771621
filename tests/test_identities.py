"""Identities to their canonical form: the fast path for numbers already in E.164 answers as
the full phonenumbers parse (``parsed_e164``) does, number by number."""
from __future__ import annotations

import random

import phonenumbers
import pytest

from normalizer.steps.identities import _possible_as_written, normalize_identity, parsed_e164, phone_e164


def e164_shaped(rng: random.Random) -> str:
    """A plus, a calling code (or digits that begin as none does) and a national number of
    any length, often opening with digits national prefixes are made of."""
    code = str(rng.choice(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))) if rng.random() < 0.9 else str(rng.randint(1, 999))
    opening = rng.choice(["", "", "0", "8", "1", "00", "80", "810", "06", "9"])
    length = rng.randint(0, 18)
    return "+" + code + (opening + "".join(rng.choice("0123456789") for _ in range(length)))[:max(length, 1)]


def test_numbers_written_as_e164_get_the_full_parses_answer() -> None:
    rng = random.Random(20261207)
    taken = 0
    for _ in range(20_000):
        value = e164_shaped(rng)
        region = rng.choice(["RU", "GB", "US", "KZ", "PL", "DE"])
        assert phone_e164.__wrapped__(value, region) == parsed_e164(value, region), (value, region)
        taken += _possible_as_written(value[1:]) is not None if value[1] != "0" else 0
    assert taken > 10_000  # most took the fast path, so the comparison above tested it


@pytest.mark.parametrize(("value", "expected"), [
    ("+79161234567", True),  # Moscow mobile: possible as written
    ("+7916123", False),  # too short for Russia
    ("+440201234567", None),  # a national number with a leading zero: the full parse decides
    ("+447911123456", True),
    ("+12025550123", True),
    ("+112025550123", None),  # begins as the NANP's national prefix (1): the full parse decides
    ("+9991234567", None),  # no calling code in the first three digits
])
def test_the_fast_path_answers_only_when_certain(value: str, expected: bool | None) -> None:
    assert _possible_as_written(value[1:]) is expected


def test_a_national_prefix_after_the_calling_code_is_still_stripped() -> None:
    assert phone_e164("+440201234567", "RU") == "+44201234567"
    assert normalize_identity("phone", " +7 916 123-45-67 ", "RU") == normalize_identity("phone", "+79161234567", "RU")
    assert normalize_identity("phone", "+7916123", "RU") is None
