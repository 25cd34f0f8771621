"""Acknowledgement texts: per language and door, deadlines in local time, no personal data in public."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.acknowledgements import DEFAULT_TEMPLATES, DOOR_KIND, AcknowledgementTexts, RetryPolicy, spoken_number
from gateway.config import ConfigError
from gateway.inbound import Inbound, Receipt
from normalizer.pipeline import Normalizer, NormalizerSettings
from normalizer.schema import Complaint

NAME, PHONE, EMAIL = "Иван Петров", "+79161234567", "ivan.petrov@example.com"
TEXTS = {"ru": "Прошу пересчитать счёт за февраль, начислено дважды.", "pl": "Proszę o korektę faktury za luty.",
         "en": "Please correct my February bill.", "uk": "Прошу виправити рахунок за лютий.",
         "de": "Bitte korrigieren Sie meine Februarrechnung."}


def complaint(text: str = TEXTS["ru"], language: str | None = None, **extra: object) -> Complaint:
    normalizer = Normalizer(NormalizerSettings.from_config({"timezone": "Europe/Moscow", "default_region": "RU"}))
    inbound = Inbound(channel="web", message_id="m1", text=text, name=NAME, language=language,
                      identities=[("phone", PHONE), ("email", EMAIL)],
                      received_at=datetime(2026, 3, 13, 13, 0, tzinfo=UTC), **extra)  # type: ignore[arg-type]
    c = normalizer.normalize(inbound)
    c.registration_number = "2026-000123"
    return c


def receipt(status: str = "new") -> Receipt:
    return Receipt(status, "2026-000123", "cust-1", "c1")  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["ru", "pl", "en", "uk", "de"])
def test_every_language_and_door_carries_the_number_and_deadlines(lang: str) -> None:
    texts = AcknowledgementTexts()
    c = complaint(TEXTS[lang], language=lang)
    for door in DOOR_KIND:
        text = texts.render(c, receipt(), door=door)
        assert ("2026-000123" in text) or ("2, 0, 2, 6. 0, 0, 0, 1, 2, 3" in text), (lang, door)
    email = texts.render(c, receipt(), door="email")
    # deadlines shown in local (Moscow) time: acknowledge Monday 15:00, respond Friday 18:00
    assert "16.03.2026 15:00" in email and "20.03.2026 18:00" in email
    assert NAME in email
    assert "20.03.2026 18:00" in texts.render(c, receipt(), door="sms")


@pytest.mark.parametrize("lang", list(DEFAULT_TEMPLATES))
def test_sms_fits_one_segment(lang: str) -> None:
    sms = AcknowledgementTexts().render(complaint(TEXTS[lang], language=lang), receipt(), door="sms")
    assert len(sms) <= (160 if sms.isascii() else 70)  # GSM-7 or UCS-2


def test_email_says_what_happens_next() -> None:
    texts, c = AcknowledgementTexts(), complaint()
    email = texts.render(c, receipt(), door="email")
    assert "Что дальше" in email and "ответьте на это письмо" in email


def test_ivr_spells_the_number_and_says_the_date() -> None:
    texts = AcknowledgementTexts()
    ru = texts.render(complaint(), receipt(), door="ivr")
    assert ru.count("2, 0, 2, 6. 0, 0, 0, 1, 2, 3") == 2 and "20 марта в 18:00" in ru
    pl = texts.render(complaint(TEXTS["pl"], language="pl"), receipt(), door="ivr")
    assert "20 marca o 18:00" in pl
    assert spoken_number("C-00042/7") == "C. 0, 0, 0, 4, 2. 7"


def test_urgent_complaints_get_the_urgent_variant() -> None:
    texts = AcknowledgementTexts()
    urgent = complaint("Пахнет газом в подъезде!")
    assert urgent.urgency == "immediate"
    sms = texts.render(urgent, receipt(), door="sms")
    assert "Срочное" in sms and "112" in sms and "13.03.2026 17:00" in sms  # within the hour, Moscow time
    assert "срочное" in texts.render(urgent, receipt(), door="email")
    assert "112" not in texts.render(complaint(), receipt(), door="sms")


def test_follow_ups_and_repeats() -> None:
    texts, c = AcknowledgementTexts(), complaint()
    assert texts.render(c, receipt("follow_up"), door="sms") == "Дополнение к обращению 2026-000123 получено."
    assert "2, 0, 2, 6" in texts.render(c, receipt("repeat"), door="ivr")


def test_language_fallbacks() -> None:
    texts = AcknowledgementTexts({"fallbacks": {"be": "ru"}}, default_language="pl")
    assert texts.language_for(complaint(language="cs")) == "en"
    assert texts.language_for(complaint(language="be")) == "ru"
    assert texts.language_for(complaint(language="de-AT")) == "de"
    c = complaint()
    c.language = None
    assert texts.language_for(c) == "pl"
    assert texts.render(complaint(language="cs"), receipt(), door="sms").startswith("Complaint registered")
    assert texts.render(complaint(), receipt(), door="sms", language="en").startswith("Complaint registered")


def test_templates_are_overridable_in_config() -> None:
    texts = AcknowledgementTexts({"templates": {"ru": {"short": "№ {number}, ответ до {respond_by}. {unknown}"},
                                                "cs": {"short": "Stížnost {number} přijata."}},
                                  "date_formats": {"ru": "%d.%m %H:%M"}})
    assert texts.render(complaint(), receipt(), door="sms") == "№ 2026-000123, ответ до 20.03 18:00. {unknown}"
    assert "Что дальше" in texts.render(complaint(), receipt(), door="email")
    assert texts.render(complaint(language="cs"), receipt(), door="sms") == "Stížnost 2026-000123 přijata."
    assert texts.render(complaint(language="cs"), receipt(), door="email").startswith("Hello")


def test_template_fields_are_filled_by_name_whatever_the_template_names() -> None:
    """Fields are computed only when a template names them: every kind of field still
    comes out, a deadline the complaint lacks reads as a dash, a non-field stays as written."""
    template = ("{number_spoken} | {legal_by} | {respond_by_spoken} | {warranty_by} | {technical_by} | "
                "{name_part} | {reference} | {organisation}| {number[0]} | {_by} | {number_by}")
    texts = AcknowledgementTexts({"templates": {"ru": {"short": template, "public": template}}, "date_formats": {"ru": "%d.%m"}})
    c = complaint()
    legal = datetime.fromisoformat(c.deadlines["legal"]).astimezone(ZoneInfo("Europe/Moscow")).strftime("%d.%m")
    c.deadlines = {**c.deadlines, "warranty": "2026-04-01T09:00:00Z"}
    c.deadlines.pop("technical", None)
    assert texts.render(c, receipt(), door="sms") == (
        f"2, 0, 2, 6. 0, 0, 0, 1, 2, 3 | {legal} | 20 марта в 18:00 | "
        f"01.04 | — | , {NAME} | m1 | | {{number[0]}} | {{_by}} | {{number_by}}")
    public = texts.render(c, receipt(), door="sms", public=True)
    assert public.startswith(f"2, 0, 2, 6. 0, 0, 0, 1, 2, 3 | {legal} | ") and public.endswith(" |  |  | | {number[0]} | {_by} | {number_by}")


def test_broken_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"acknowledgements\.templates\.ru\.short"):
        AcknowledgementTexts({"templates": {"ru": {"short": "Номер {number"}}})
    with pytest.raises(ConfigError, match="acknowledgements"):
        AcknowledgementTexts({"template": {}})


@pytest.mark.parametrize("lang", list(DEFAULT_TEMPLATES))
def test_public_replies_never_carry_personal_data(lang: str) -> None:
    leaky = "{name} {name_part} {reference} {organisation} {number}"
    for texts in (AcknowledgementTexts(), AcknowledgementTexts({"templates": {lang: {"public": leaky, "urgent_note": leaky}}})):
        for text in (TEXTS[lang], "Пахнет газом, звоните +79161234567"):
            c = complaint(text, language=lang, submitted_by={"kind": "ombudsman", "organisation": "rpo", "person": "Anna Nowak"},
                          meta={"partner": {"reference": "RPO/2026/1", "organisation_name": "Rzecznik"}})
            for door in DOOR_KIND:
                public = texts.render(c, receipt(), door=door, public=True)
                assert "2026-000123" in public
                for personal in ("Иван", "Петров", PHONE, "9161234567", EMAIL, "ivan", text[:15], "RPO/2026/1", "Rzecznik",
                                 "Anna", "rpo"):
                    assert personal not in public, (lang, door, personal, public)


def test_partner_text_names_the_case_and_the_statutory_deadline() -> None:
    c = complaint(TEXTS["pl"], language="pl", submitted_by={"kind": "ombudsman", "organisation": "rpo", "person": None},
                  meta={"partner": {"reference": "RPO/2026/1", "organisation_name": "Rzecznik Praw Obywatelskich"}})
    text = AcknowledgementTexts().render(c, receipt(), door="partner")
    assert text.startswith("Sprawa RPO/2026/1 (Rzecznik Praw Obywatelskich) została zarejestrowana pod numerem 2026-000123")
    assert "12.05.2026 23:59" in text


def test_a_failed_acknowledgement_waits_twice_as_long_after_each_failure_up_to_the_limit() -> None:
    default = RetryPolicy.from_config({})
    assert (default.attempts, default.first_delay, default.max_delay) == (8, 2.0, 300.0)
    assert [default.delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]  # about four minutes in all
    policy = RetryPolicy.from_config({"retry": {"attempts": 5, "first_delay_seconds": 10, "max_delay_seconds": 25}})
    assert [policy.delay(n) for n in range(1, 5)] == [10, 20, 25, 25]
    assert RetryPolicy.from_config({"retry": {"attempts": 1}}).attempts == 1  # never again
    for wrong in ({"attempts": 0}, {"first_delay_seconds": -1}, {"every": 5}):
        with pytest.raises(ConfigError, match="acknowledgements"):
            RetryPolicy.from_config({"retry": wrong})
