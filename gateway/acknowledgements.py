"""Acknowledgement texts: the registration number, in the customer's language and door.

Short texts for doors that count characters (SMS, IVR, chat), a full one for e-mail; a
public variant for public comments that never repeats personal data. Every text can be
overridden in config.yaml under ``acknowledgements.templates.<lang>.<kind>``.
"""
from __future__ import annotations

from datetime import datetime
from string import Formatter
from typing import Any
from zoneinfo import ZoneInfo

from gateway.inbound import Receipt
from normalizer.schema import Complaint

LANGUAGES = ("ru", "pl", "en")

DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "ru": {
        "short": "Ваше обращение зарегистрировано под номером {number}. Ответим до {respond_by}.",
        "full": (
            "Здравствуйте{name_part}!\n\n"
            "Ваше обращение зарегистрировано под номером {number}.\n"
            "Мы подтвердим его рассмотрение до {acknowledge_by} и дадим ответ до {respond_by}.\n"
            "Чтобы дополнить обращение, просто ответьте на это письмо или укажите номер {number}.\n\n"
            "Это автоматическое сообщение."
        ),
        "public": "Спасибо! Обращение зарегистрировано под номером {number}. Подробности мы отправим вам в личные сообщения.",
        "follow_up": "Дополнение к обращению {number} получено.",
        "repeat": "Это обращение уже зарегистрировано под номером {number}; мы его рассматриваем.",
    },
    "pl": {
        "short": "Twoja reklamacja została zarejestrowana pod numerem {number}. Odpowiemy do {respond_by}.",
        "full": (
            "Dzień dobry{name_part}!\n\n"
            "Twoja reklamacja została zarejestrowana pod numerem {number}.\n"
            "Potwierdzimy jej rozpatrywanie do {acknowledge_by}, a odpowiemy do {respond_by}.\n"
            "Aby ją uzupełnić, odpowiedz na tę wiadomość lub podaj numer {number}.\n\n"
            "To jest wiadomość automatyczna."
        ),
        "public": "Dziękujemy! Zgłoszenie zarejestrowano pod numerem {number}. Szczegóły wyślemy w wiadomości prywatnej.",
        "follow_up": "Uzupełnienie reklamacji {number} zostało przyjęte.",
        "repeat": "Ta reklamacja jest już zarejestrowana pod numerem {number}; rozpatrujemy ją.",
    },
    "en": {
        "short": "Your complaint is registered as {number}. We will answer by {respond_by}.",
        "full": (
            "Hello{name_part},\n\n"
            "Your complaint is registered as {number}.\n"
            "We will confirm that it is being handled by {acknowledge_by} and answer by {respond_by}.\n"
            "To add to it, reply to this message or quote the number {number}.\n\n"
            "This is an automatic message."
        ),
        "public": "Thank you! Your complaint is registered as {number}. We will send you the details in a private message.",
        "follow_up": "Your addition to complaint {number} has been received.",
        "repeat": "This complaint is already registered as {number}; we are working on it.",
    },
}

#: Which text each door gets.
DOOR_KIND = {"email": "full", "fax": "full", "sms": "short", "ivr": "short", "chat": "short", "web": "short"}


class AcknowledgementTexts:
    def __init__(self, section: dict[str, Any] | None = None, default_language: str = "ru") -> None:
        section = section or {}
        self.default_language = section.get("default_language", default_language)
        self.templates = {lang: dict(texts) for lang, texts in DEFAULT_TEMPLATES.items()}
        for lang, texts in (section.get("templates") or {}).items():
            self.templates.setdefault(lang, {}).update(texts)
        self.date_format = section.get("date_format", "%d.%m.%Y %H:%M")

    def language_for(self, complaint: Complaint) -> str:
        lang = (complaint.language or "").split("-")[0]
        return lang if lang in self.templates else self.default_language

    def render(self, complaint: Complaint, receipt: Receipt, *, door: str, public: bool = False) -> str:
        lang = self.language_for(complaint)
        texts = {**self.templates["en"], **self.templates.get(lang, {})}
        if public:
            kind = "public"
        elif receipt.status in ("follow_up", "repeat"):
            kind = receipt.status
        else:
            kind = DOOR_KIND.get(door, "short")
        values = {
            "number": receipt.registration_number or "",
            "name_part": "" if public or not complaint.customer.name else f", {complaint.customer.name}",
            "acknowledge_by": self._deadline(complaint, "acknowledge"),
            "respond_by": self._deadline(complaint, "respond"),
        }
        return _format(texts[kind], values)

    def _deadline(self, complaint: Complaint, name: str) -> str:
        value = complaint.deadlines.get(name)
        if not value:
            return "—"
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        tz = complaint.meta.get("timezone")
        if tz:
            when = when.astimezone(ZoneInfo(tz))
        return when.strftime(self.date_format)


def _format(template: str, values: dict[str, str]) -> str:
    """Fill only known fields; a stray brace in an operator's template stays as it is."""
    out = []
    for literal, field, _spec, _conv in Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values.get(field, "{" + field + "}"))
    return "".join(out)
