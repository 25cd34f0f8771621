"""Language: the door's locale wins, else Lingua among the configured candidates."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError
from gateway.inbound import Inbound
from normalizer.pipeline import Normalizer, NormalizerSettings


def normalize(text: str, locale: str | None = None, **section: object):
    settings = NormalizerSettings.from_config({"default_language": "ru", **section})
    inbound = Inbound(channel="test", message_id="m1", text=text, language=locale, received_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    return Normalizer(settings).normalize(inbound)


@pytest.mark.parametrize(("text", "expected"), [
    ("Третий день нет интернета, роутер мигает", "ru"),
    ("Od wczoraj nie mam internetu", "pl"),
    ("My broadband has been down since Monday", "en"),
    ("Немає світла з самого ранку", "uk"),
    ("Seit gestern habe ich kein Internet", "de"),
    ("Rachunek za gaz jest za wysoki", "pl"),
    ("Счёт за свет завышен", "ru"),
])
def test_short_complaints_are_detected(text: str, expected: str) -> None:
    complaint = normalize(text)
    assert complaint.language == expected
    assert complaint.meta["language_source"] == "detected"


def test_the_doors_locale_wins_over_the_text() -> None:
    complaint = normalize("Третий день нет интернета", locale="pl-PL")
    assert complaint.language == "pl" and complaint.meta["language_source"] == "door"


def test_text_without_letters_gets_the_default_language() -> None:
    complaint = normalize("+7 916 123-45-67 !!!", default_language="pl")
    assert complaint.language == "pl" and complaint.meta["language_source"] == "default"


def test_only_candidate_languages_are_chosen() -> None:
    complaint = normalize("My broadband has been down since Monday and nobody answers", language={"candidates": ["ru", "pl"]})
    assert complaint.language in ("ru", "pl")
    assert normalize("Seit gestern habe ich kein Internet", language={"candidates": ["de"]}).language == "de"


def test_low_accuracy_mode_still_tells_scripts_apart() -> None:
    assert normalize("Третий день нет интернета, роутер мигает красным", language={"accuracy": "low"}).language == "ru"


def test_unknown_candidate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"normalizer\.language\.candidates: unknown language code 'xx'"):
        NormalizerSettings.from_config({"language": {"candidates": ["ru", "xx"]}})
    with pytest.raises(ConfigError, match="normalizer.language"):
        NormalizerSettings.from_config({"language": {"accuracy": "medium"}})


def test_letters_only_one_candidate_writes_decide_without_the_detector() -> None:
    import json
    from pathlib import Path

    from normalizer.language_detection import _by_letters

    codes = ("ru", "pl", "en", "uk", "de")
    data = Path(__file__).resolve().parent.parent / "bench" / "data"
    rows = [json.loads(line) for name in ("urgency_labelled.jsonl", "urgency_holdout.jsonl")
            for line in (data / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    decided = [(row["lang"], _by_letters(row["text"], codes)) for row in rows]
    decided = [(label, found) for label, found in decided if found is not None]
    assert len(decided) > 100
    assert all(label == found for label, found in decided)
    assert _by_letters("Вы", codes) == "ru" and _by_letters("Її", codes) == "uk"
    assert _by_letters("Zażółć gęślą jaźń", codes) == "pl" and _by_letters("Straße", codes) == "de"
    assert _by_letters("Нет связи", codes) is None  # no letter only Russian writes: the detector decides
    assert _by_letters("Nie mam internetu", codes) is None  # Polish typed without Polish letters
    assert _by_letters("Ошибка: connection refused by the server", codes) is None  # two scripts
    assert _by_letters("Выбыл из строя", ("ru", "be")) is None  # Belarusian writes ы too
    assert _by_letters("Grüße aus Łódź", codes) is None  # letters of two languages


@settings(max_examples=500)
@given(st.text(st.sampled_from("aźęЫыїÄßxyz ЖжQ\u0240\u024f\u0250\u0400\u04ff\u0500\u00bf\u00c0\u00ff\u0100\u0239\u023fɐ12,.\ud800😀ł"),
               max_size=60))
def test_letters_are_counted_by_script_as_the_plain_search_counts_them(text: str) -> None:
    from normalizer.language_detection import _letters_by_script

    cyrillic = sum(len(run) for run in re.findall(r"[\u0400-\u04ff]+", text))
    latin = sum(len(run) for run in re.findall(r"[a-zA-Z\u00c0-\u024f]+", text))
    assert _letters_by_script(text) == (cyrillic, latin)
