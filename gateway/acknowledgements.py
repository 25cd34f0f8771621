"""Acknowledgement texts: the registration number, the deadlines and what happens next, in
the customer's language and in the shape their door needs.

Kinds: ``short`` (SMS, web), ``ivr`` (spoken: digits one by one, dates in words), ``chat``
(messengers), ``full`` (e-mail, fax, post), ``public`` (a public comment: never personal
data), ``partner`` (to an ombudsman or consumer organisation), ``follow_up`` and ``repeat``.
Every text can be overridden in config.yaml under ``acknowledgements.templates.<lang>.<kind>``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from string import Formatter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import ConfigError, validate
from gateway.inbound import Receipt
from normalizer.schema import Complaint

LANGUAGES = ("ru", "pl", "en", "uk", "de")

DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "ru": {
        "short": "Обращение № {number} зарегистрировано. Ответ до {respond_by}.",
        "short_urgent": "Срочное обращение № {number} зарегистрировано. Свяжемся до {acknowledge_by}. При угрозе жизни звоните 112.",
        "ivr": "Ваше обращение зарегистрировано. Номер обращения: {number_spoken}. Повторяю: {number_spoken}. "
               "Мы ответим до {respond_by_spoken}.",
        "ivr_urgent": "Ваше обращение зарегистрировано как срочное. Номер обращения: {number_spoken}. Повторяю: "
                      "{number_spoken}. Мы свяжемся с вами до {acknowledge_by_spoken}. При угрозе жизни звоните 112.",
        "chat": "Спасибо! Обращение зарегистрировано под номером {number}.{urgent_note} Мы ответим до {respond_by}. "
                "Чтобы дополнить обращение, просто напишите сюда.",
        "full": (
            "Здравствуйте{name_part}!\n\n"
            "Ваше обращение зарегистрировано под номером {number}.{urgent_note}\n\n"
            "Что дальше:\n"
            "— до {acknowledge_by} специалист возьмёт обращение в работу и свяжется с вами, если понадобятся подробности;\n"
            "— до {respond_by} мы дадим ответ по существу.\n\n"
            "Чтобы дополнить обращение, ответьте на это письмо или укажите номер {number}.\n\n"
            "Это автоматическое сообщение."
        ),
        "urgent_note": " Обращение отмечено как срочное: мы свяжемся с вами до {acknowledge_by}."
                       " Если есть угроза жизни или здоровью, звоните 112.",
        "public": "Спасибо! Обращение зарегистрировано под номером {number}. Подробности мы отправим вам в личные сообщения.",
        "partner": "Обращение {reference} ({organisation}) зарегистрировано под номером {number}. "
                   "Возьмём в работу до {acknowledge_by}, ответим до {respond_by}; срок по закону — до {legal_by}.",
        "follow_up": "Дополнение к обращению {number} получено.",
        "follow_up_ivr": "Дополнение к обращению {number_spoken} получено.",
        "repeat": "Это обращение уже зарегистрировано под номером {number}; мы его рассматриваем.",
        "repeat_ivr": "Это обращение уже зарегистрировано под номером {number_spoken}; мы его рассматриваем.",
    },
    "pl": {
        "short": "Reklamacja zarejestrowana, nr {number}. Odpowiemy do {respond_by}.",
        "short_urgent": "Pilne zgłoszenie nr {number} zarejestrowane. Skontaktujemy się do {acknowledge_by}. "
                        "W razie zagrożenia życia dzwoń na 112.",
        "ivr": "Twoje zgłoszenie zostało zarejestrowane. Numer zgłoszenia: {number_spoken}. Powtarzam: {number_spoken}. "
               "Odpowiemy do {respond_by_spoken}.",
        "ivr_urgent": "Twoje zgłoszenie zostało zarejestrowane jako pilne. Numer zgłoszenia: {number_spoken}. Powtarzam: "
                      "{number_spoken}. Skontaktujemy się do {acknowledge_by_spoken}. W razie zagrożenia życia dzwoń na 112.",
        "chat": "Dziękujemy! Zgłoszenie zarejestrowano pod numerem {number}.{urgent_note} Odpowiemy do {respond_by}. "
                "Aby je uzupełnić, po prostu napisz tutaj.",
        "full": (
            "Dzień dobry{name_part}!\n\n"
            "Twoja reklamacja została zarejestrowana pod numerem {number}.{urgent_note}\n\n"
            "Co dalej:\n"
            "— do {acknowledge_by} konsultant przyjmie ją do rozpatrzenia i skontaktuje się, jeśli będą potrzebne szczegóły;\n"
            "— do {respond_by} udzielimy odpowiedzi.\n\n"
            "Aby ją uzupełnić, odpowiedz na tę wiadomość lub podaj numer {number}.\n\n"
            "To jest wiadomość automatyczna."
        ),
        "urgent_note": " Zgłoszenie oznaczono jako pilne: skontaktujemy się do {acknowledge_by}."
                       " W razie zagrożenia życia lub zdrowia dzwoń na 112.",
        "public": "Dziękujemy! Zgłoszenie zarejestrowano pod numerem {number}. Szczegóły wyślemy w wiadomości prywatnej.",
        "partner": "Sprawa {reference} ({organisation}) została zarejestrowana pod numerem {number}. "
                   "Przyjmiemy ją do rozpatrzenia do {acknowledge_by}, odpowiemy do {respond_by}; termin ustawowy: {legal_by}.",
        "follow_up": "Uzupełnienie reklamacji {number} zostało przyjęte.",
        "follow_up_ivr": "Uzupełnienie zgłoszenia {number_spoken} zostało przyjęte.",
        "repeat": "Ta reklamacja jest już zarejestrowana pod numerem {number}; rozpatrujemy ją.",
        "repeat_ivr": "To zgłoszenie jest już zarejestrowane pod numerem {number_spoken}; rozpatrujemy je.",
    },
    "en": {
        "short": "Complaint registered as {number}. We will answer by {respond_by}.",
        "short_urgent": "Urgent complaint {number} registered. We will contact you by {acknowledge_by}. "
                        "If life is at risk, call 112.",
        "ivr": "Your complaint is registered. Your number is: {number_spoken}. Again: {number_spoken}. "
               "We will answer by {respond_by_spoken}.",
        "ivr_urgent": "Your complaint is registered as urgent. Your number is: {number_spoken}. Again: {number_spoken}. "
                      "We will contact you by {acknowledge_by_spoken}. If life is at risk, call 112.",
        "chat": "Thank you! Your complaint is registered as {number}.{urgent_note} We will answer by {respond_by}. "
                "To add to it, just write here.",
        "full": (
            "Hello{name_part},\n\n"
            "Your complaint is registered as {number}.{urgent_note}\n\n"
            "What happens next:\n"
            "- by {acknowledge_by} an advisor takes it on and contacts you if we need more details;\n"
            "- by {respond_by} we answer it in full.\n\n"
            "To add to it, reply to this message or quote the number {number}.\n\n"
            "This is an automatic message."
        ),
        "urgent_note": " It is marked urgent: we will contact you by {acknowledge_by}."
                       " If there is a danger to life or health, call 112.",
        "public": "Thank you! Your complaint is registered as {number}. We will send you the details in a private message.",
        "partner": "Case {reference} ({organisation}) is registered as {number}. "
                   "We will take it on by {acknowledge_by} and answer by {respond_by}; the statutory deadline is {legal_by}.",
        "follow_up": "Your addition to complaint {number} has been received.",
        "follow_up_ivr": "Your addition to complaint {number_spoken} has been received.",
        "repeat": "This complaint is already registered as {number}; we are working on it.",
        "repeat_ivr": "This complaint is already registered as {number_spoken}; we are working on it.",
    },
    "uk": {
        "short": "Звернення № {number} зареєстровано. Відповідь до {respond_by}.",
        "short_urgent": "Термінове звернення № {number} зареєстровано. Зв'яжемося до {acknowledge_by}. "
                        "У разі загрози життю телефонуйте 112.",
        "ivr": "Ваше звернення зареєстровано. Номер звернення: {number_spoken}. Повторюю: {number_spoken}. "
               "Ми відповімо до {respond_by_spoken}.",
        "ivr_urgent": "Ваше звернення зареєстровано як термінове. Номер звернення: {number_spoken}. Повторюю: "
                      "{number_spoken}. Ми зв'яжемося з вами до {acknowledge_by_spoken}. У разі загрози життю телефонуйте 112.",
        "chat": "Дякуємо! Звернення зареєстровано під номером {number}.{urgent_note} Ми відповімо до {respond_by}. "
                "Щоб доповнити звернення, просто напишіть сюди.",
        "full": (
            "Добрий день{name_part}!\n\n"
            "Ваше звернення зареєстровано під номером {number}.{urgent_note}\n\n"
            "Що далі:\n"
            "— до {acknowledge_by} фахівець візьме звернення в роботу і зв'яжеться з вами, якщо знадобляться подробиці;\n"
            "— до {respond_by} ми надамо відповідь по суті.\n\n"
            "Щоб доповнити звернення, дайте відповідь на цей лист або вкажіть номер {number}.\n\n"
            "Це автоматичне повідомлення."
        ),
        "urgent_note": " Звернення позначено як термінове: ми зв'яжемося з вами до {acknowledge_by}."
                       " Якщо є загроза життю чи здоров'ю, телефонуйте 112.",
        "public": "Дякуємо! Звернення зареєстровано під номером {number}. Подробиці ми надішлемо вам в особисті повідомлення.",
        "partner": "Звернення {reference} ({organisation}) зареєстровано під номером {number}. "
                   "Візьмемо в роботу до {acknowledge_by}, відповімо до {respond_by}; строк за законом — до {legal_by}.",
        "follow_up": "Доповнення до звернення {number} отримано.",
        "follow_up_ivr": "Доповнення до звернення {number_spoken} отримано.",
        "repeat": "Це звернення вже зареєстровано під номером {number}; ми його розглядаємо.",
        "repeat_ivr": "Це звернення вже зареєстровано під номером {number_spoken}; ми його розглядаємо.",
    },
    "de": {
        "short": "Beschwerde registriert, Nr. {number}. Antwort bis {respond_by}.",
        "short_urgent": "Dringende Beschwerde Nr. {number} registriert. Wir melden uns bis {acknowledge_by}. "
                        "Bei Lebensgefahr: 112.",
        "ivr": "Ihre Beschwerde ist registriert. Ihre Nummer lautet: {number_spoken}. Noch einmal: {number_spoken}. "
               "Wir antworten bis {respond_by_spoken}.",
        "ivr_urgent": "Ihre Beschwerde ist als dringend registriert. Ihre Nummer lautet: {number_spoken}. Noch einmal: "
                      "{number_spoken}. Wir melden uns bis {acknowledge_by_spoken}. Bei Lebensgefahr wählen Sie 112.",
        "chat": "Danke! Ihre Beschwerde ist unter der Nummer {number} registriert.{urgent_note} Wir antworten bis {respond_by}. "
                "Um etwas zu ergänzen, schreiben Sie einfach hier.",
        "full": (
            "Guten Tag{name_part},\n\n"
            "Ihre Beschwerde ist unter der Nummer {number} registriert.{urgent_note}\n\n"
            "Wie es weitergeht:\n"
            "- bis {acknowledge_by} übernimmt ein Mitarbeiter den Fall und meldet sich, falls wir Details brauchen;\n"
            "- bis {respond_by} erhalten Sie unsere Antwort.\n\n"
            "Um etwas zu ergänzen, antworten Sie auf diese Nachricht oder nennen Sie die Nummer {number}.\n\n"
            "Dies ist eine automatische Nachricht."
        ),
        "urgent_note": " Sie ist als dringend markiert: wir melden uns bis {acknowledge_by}."
                       " Bei Gefahr für Leben oder Gesundheit wählen Sie 112.",
        "public": "Danke! Ihre Beschwerde ist unter der Nummer {number} registriert. Details senden wir Ihnen per Privatnachricht.",
        "partner": "Fall {reference} ({organisation}) ist unter der Nummer {number} registriert. "
                   "Wir übernehmen ihn bis {acknowledge_by} und antworten bis {respond_by}; gesetzliche Frist: {legal_by}.",
        "follow_up": "Ihre Ergänzung zur Beschwerde {number} ist eingegangen.",
        "follow_up_ivr": "Ihre Ergänzung zur Beschwerde {number_spoken} ist eingegangen.",
        "repeat": "Diese Beschwerde ist bereits unter der Nummer {number} registriert; wir bearbeiten sie.",
        "repeat_ivr": "Diese Beschwerde ist bereits unter der Nummer {number_spoken} registriert; wir bearbeiten sie.",
    },
}

#: Which kind of text each door gets; a door not listed gets ``short``.
DOOR_KIND = {"email": "full", "fax": "full", "post": "full", "letter": "full", "sms": "short", "web": "short",
             "ivr": "ivr", "voice": "ivr", "chat": "chat", "messenger": "chat", "partner": "partner",
             "public": "public", "short": "short", "full": "full"}
#: Fields that identify a person: never filled in a public text, whatever the template says.
PERSONAL_FIELDS = ("name", "name_part", "reference", "organisation")

MONTHS = {
    "ru": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"),
    "pl": ("stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca", "sierpnia", "września", "października",
           "listopada", "grudnia"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
           "December"),
    "uk": ("січня", "лютого", "березня", "квітня", "травня", "червня", "липня", "серпня", "вересня", "жовтня", "листопада",
           "грудня"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November",
           "Dezember"),
}
SPOKEN_DATE = {"ru": "{day} {month} в {time}", "pl": "{day} {month} o {time}", "en": "{day} {month} at {time}",
               "uk": "{day} {month} о {time}", "de": "{day}. {month} um {time} Uhr"}
NO_DEADLINE = "—"
#: Deadlines every acknowledgement can name (``{respond_by}``, ``{legal_by_spoken}``...), set or not.
DEADLINE_NAMES = ("acknowledge", "respond", "technical", "legal")

SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "default_language": {"type": "string", "pattern": "^[a-z]{2}$"},
        "fallback_language": {"type": "string", "pattern": "^[a-z]{2}$"},
        "fallbacks": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[a-z]{2}$"}},
        "date_format": {"type": "string"},
        "date_formats": {"type": "object", "additionalProperties": {"type": "string"}},
        "templates": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}}},
        "retry": {"type": "object", "additionalProperties": False, "properties": {
            "attempts": {"type": "integer", "minimum": 1},
            "first_delay_seconds": {"type": "number", "minimum": 0},
            "max_delay_seconds": {"type": "number", "minimum": 0},
        }},
        "max_recorded_error_chars": {"type": "integer", "minimum": 1},
    },
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed acknowledgement is sent again (``acknowledgements.retry``): ``attempts``
    in all, the first included (1: never again); ``first_delay`` seconds after the first
    failure, twice as long after each next one, at most ``max_delay``. The defaults try for
    about four minutes. One given up on is recorded on its registration with at most
    ``max_error_chars`` of the error (``acknowledgements.max_recorded_error_chars``)."""

    attempts: int = 8
    first_delay: float = 2.0
    max_delay: float = 300.0
    max_error_chars: int = 500

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> RetryPolicy:
        section = section or {}
        validate(section, SCHEMA, prefix="acknowledgements")
        retry, default = section.get("retry") or {}, cls()
        return cls(int(retry.get("attempts", default.attempts)), float(retry.get("first_delay_seconds", default.first_delay)),
                   float(retry.get("max_delay_seconds", default.max_delay)),
                   int(section.get("max_recorded_error_chars", default.max_error_chars)))

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1, 2, ...)."""
        return min(self.max_delay, self.first_delay * 2 ** (failures - 1))


def spoken_number(number: str) -> str:
    """Characters one by one, groups apart, so that text-to-speech reads every digit:
    ``2026-000123`` -> ``2, 0, 2, 6. 0, 0, 0, 1, 2, 3``."""
    groups: list[list[str]] = [[]]
    for ch in number:
        if ch.isalnum():
            groups[-1].append(ch)
        elif groups[-1]:
            groups.append([])
    return ". ".join(", ".join(g) for g in groups if g)


class AcknowledgementTexts:
    """Renders acknowledgements; ``render(complaint, receipt, door=..., public=...)``."""

    def __init__(self, section: dict[str, Any] | None = None, default_language: str = "ru") -> None:
        section = section or {}
        validate(section, SCHEMA, prefix="acknowledgements")
        self.default_language = section.get("default_language", default_language)
        #: For a language without templates: ``fallbacks[lang]``, else this one.
        self.fallback_language = section.get("fallback_language", "en")
        self.fallbacks: dict[str, str] = dict(section.get("fallbacks") or {})
        self.templates = {lang: dict(texts) for lang, texts in DEFAULT_TEMPLATES.items()}
        for lang, texts in (section.get("templates") or {}).items():
            for kind, template in texts.items():
                try:
                    list(Formatter().parse(template))
                except ValueError as exc:
                    raise ConfigError(f"acknowledgements.templates.{lang}.{kind}: {exc} (write a literal brace as {{{{ or }}}})") from exc
            self.templates.setdefault(lang, {}).update(texts)
        self.date_format = section.get("date_format", "%d.%m.%Y %H:%M")
        self.date_formats: dict[str, str] = dict(section.get("date_formats") or {})

    def language_for(self, complaint: Complaint, language: str | None = None) -> str:
        lang = (language or complaint.language or "").replace("_", "-").split("-")[0].lower()
        if not lang:
            return self.default_language
        if lang in self.templates:
            return lang
        return self.fallbacks.get(lang, self.fallback_language)

    def kind_for(self, complaint: Complaint, receipt: Receipt, door: str, public: bool) -> list[str]:
        """Template names to try, most specific first."""
        if public:
            return ["public"]
        door_kind = DOOR_KIND.get(door, "short")
        if receipt.status in ("follow_up", "repeat"):
            return [f"{receipt.status}_{door_kind}", receipt.status]
        urgent = [f"{door_kind}_urgent"] if complaint.urgency == "immediate" else []
        return [*urgent, door_kind, "short"]

    def render(self, complaint: Complaint, receipt: Receipt, *, door: str, public: bool = False,
               language: str | None = None) -> str:
        """The text for ``door`` (``email``, ``sms``, ``ivr``, ``chat``, ``web``, ``partner``...);
        ``public`` for a reply others can read; ``language`` overrides the complaint's."""
        lang = self.language_for(complaint, language)
        texts = {**self.templates["en"], **self.templates.get(self.fallback_language, {}), **self.templates.get(lang, {})}
        kind = next(k for k in self.kind_for(complaint, receipt, door, public) if k in texts)
        values = _Fields(lambda field: self._value(field, complaint, receipt, lang))
        if public:
            for field in PERSONAL_FIELDS:
                values[field] = ""
        urgent = complaint.urgency == "immediate" and "urgent_note" in texts
        values["urgent_note"] = _format(texts["urgent_note"], values) if urgent else ""
        return _format(texts[kind], values)

    def _value(self, field: str, complaint: Complaint, receipt: Receipt, lang: str) -> str | None:
        """One template field's text, or None for a field templates do not know."""
        number = receipt.registration_number or ""
        name = complaint.customer.name
        if field == "number":
            return number
        if field == "number_spoken":
            return spoken_number(number)
        if field == "name":
            return name or ""
        if field == "name_part":
            return f", {name}" if name else ""
        if field in ("reference", "organisation"):
            partner = _mapping(complaint.meta.get("partner"))
            if field == "reference":
                return str(partner.get("reference") or complaint.channel_message_id)
            submitted_by = complaint.submitted_by
            return str(partner.get("organisation_name") or (submitted_by.organisation if submitted_by else ""))
        deadline, spoken = field.removesuffix("_by"), False
        if deadline == field:
            deadline, spoken = field.removesuffix("_by_spoken"), True
            if deadline == field:
                return None
        if deadline not in DEADLINE_NAMES and deadline not in complaint.deadlines:
            return None
        when = self._local(complaint, deadline)
        if when is None:
            return NO_DEADLINE
        return self._spoken_date(when, lang) if spoken else when.strftime(self.date_formats.get(lang, self.date_format))

    def _local(self, complaint: Complaint, name: str) -> datetime | None:
        value = complaint.deadlines.get(name)
        if not value:
            return None
        when = datetime.fromisoformat(value)
        try:
            return when.astimezone(ZoneInfo(complaint.meta.get("timezone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            return when

    @staticmethod
    def _spoken_date(when: datetime, lang: str) -> str:
        months = MONTHS.get(lang, MONTHS["en"])
        return SPOKEN_DATE.get(lang, SPOKEN_DATE["en"]).format(day=when.day, month=months[when.month - 1],
                                                               time=when.strftime("%H:%M"))


class _Fields(dict[str, str]):
    """A template's values, each computed the first time a template names it (most
    templates name two or three of the twenty fields)."""

    def __init__(self, compute: Callable[[str], str | None]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, field: str) -> str:
        value = self._compute(field)
        if value is None:
            raise KeyError(field)
        self[field] = value
        return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@lru_cache(maxsize=512)
def _parsed(template: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((literal, field) for literal, field, _spec, _conv in Formatter().parse(template))


def _format(template: str, values: dict[str, str]) -> str:
    """Fill only known fields; an unknown ``{field}`` in an operator's template stays as it is."""
    out = []
    for literal, field in _parsed(template):
        out.append(literal)
        if field is not None:
            try:
                out.append(values[field])
            except KeyError:
                out.append("{" + field + "}")
    return "".join(out)
