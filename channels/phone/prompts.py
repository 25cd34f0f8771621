"""What the phone doors say around the registration number, in ru, pl and en.

The number itself is spoken with the gateway's ``ivr`` acknowledgement text (digits one by
one, see gateway.acknowledgements). Every prompt here can be overridden per language in a
channel's ``prompts`` setting (for the company's own greeting); keywords are what speech
recognition may hear for a choice.
"""
from __future__ import annotations

import re
from typing import Any

LANGUAGES = ("ru", "pl", "en")

#: The speech locale of each language (``<Say language>``, ``<Gather language>``).
DEFAULT_LOCALES = {"ru": "ru-RU", "pl": "pl-PL", "en": "en-US"}

PROMPTS: dict[str, dict[str, str]] = {
    "ru": {
        "greeting": "Здравствуйте! Вы позвонили в службу приёма обращений.",
        "language_option": "Для русского языка нажмите {digit}.",
        "not_understood": "Извините, мы вас не поняли.",
        "account": "Введите номер лицевого счёта и нажмите решётку. Если номера нет, просто нажмите решётку.",
        "account_invalid": "Номер лицевого счёта не распознан.",
        "urgency": ("Если вы чувствуете запах газа или есть опасность поражения электрическим током, "
                    "нажмите 1 или скажите «авария». В остальных случаях нажмите 2."),
        "emergency": ("Если есть угроза жизни, немедленно покиньте помещение и позвоните по номеру 112. "
                      "Ваше обращение будет зарегистрировано как срочное."),
        "record": "После звукового сигнала опишите вашу проблему. Чтобы закончить, нажмите решётку.",
        "no_message": "Мы не услышали вашего сообщения.",
        "accepted": "Ваше сообщение принято. Номер обращения вам сообщит оператор.",
        "failure": "К сожалению, сейчас мы не можем назвать номер обращения. Ваше сообщение записано, перезвоните позже.",
        "goodbye": "Спасибо, до свидания.",
        "subject": "Обращение по телефону",
    },
    "pl": {
        "greeting": "Dzień dobry! Dodzwoniłeś się do działu reklamacji.",
        "language_option": "Dla języka polskiego naciśnij {digit}.",
        "not_understood": "Przepraszamy, nie zrozumieliśmy.",
        "account": "Wprowadź numer konta klienta i naciśnij krzyżyk. Jeśli go nie masz, naciśnij tylko krzyżyk.",
        "account_invalid": "Nie rozpoznaliśmy numeru konta.",
        "urgency": ("Jeśli czujesz zapach gazu lub grozi porażenie prądem, naciśnij 1 albo powiedz „awaria”. "
                    "W pozostałych przypadkach naciśnij 2."),
        "emergency": ("Jeśli zagrożone jest życie, natychmiast opuść pomieszczenie i zadzwoń pod numer 112. "
                      "Twoje zgłoszenie zostanie zarejestrowane jako pilne."),
        "record": "Po sygnale opisz swój problem. Aby zakończyć, naciśnij krzyżyk.",
        "no_message": "Nie usłyszeliśmy wiadomości.",
        "accepted": "Twoja wiadomość została przyjęta. Numer reklamacji poda konsultant.",
        "failure": "Niestety nie możemy teraz podać numeru reklamacji. Twoja wiadomość została nagrana, zadzwoń później.",
        "goodbye": "Dziękujemy, do widzenia.",
        "subject": "Reklamacja telefoniczna",
    },
    "en": {
        "greeting": "Hello! You have reached the complaints service.",
        "language_option": "For English, press {digit}.",
        "not_understood": "Sorry, we did not understand.",
        "account": "Enter your account number and press the hash key. If you have none, just press the hash key.",
        "account_invalid": "The account number was not recognised.",
        "urgency": ("If you smell gas or there is a danger from electricity, press 1 or say emergency. "
                    "Otherwise press 2."),
        "emergency": ("If anyone is in danger, leave the building at once and call 112. "
                      "Your complaint will be registered as urgent."),
        "record": "After the tone, please describe your problem. Press the hash key when you are done.",
        "no_message": "We did not hear a message.",
        "accepted": "Your message has been received. An operator will tell you the complaint number.",
        "failure": "Sorry, we cannot give you a complaint number right now. Your message is recorded; please call again later.",
        "goodbye": "Thank you, goodbye.",
        "subject": "Complaint by phone",
    },
}

#: Words speech recognition may return for each language in the language menu.
LANGUAGE_WORDS = {
    "ru": ("русский", "русском", "по-русски", "russian", "rosyjski"),
    "pl": ("polski", "polsku", "polish", "польский"),
    "en": ("english", "angielski", "английский"),
}

#: Word stems and whole words for "yes, it is dangerous", and words for "no", in the urgency
#: menu ("no" is checked first: "нет газа" is a supply complaint, not a leak).
URGENT_STEMS = ("авари", "утечк", "газ", "электр", "срочн", "awari", "gaz", "prąd", "elektr", "pilne",
                "emergenc", "gas", "electric", "danger", "urgent")
URGENT_WORDS = ("да", "ток", "tak", "yes")
NOT_URGENT_WORDS = ("нет", "не", "nie", "no", "not")

PROMPTS_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {lang: {"type": "object", "additionalProperties": False,
                          "properties": {key: {"type": "string"} for key in PROMPTS["en"]}}
                   for lang in LANGUAGES},
}

class Prompts:
    """The prompts of one channel: built-in texts with the operator's overrides."""

    def __init__(self, overrides: dict[str, dict[str, str]] | None = None) -> None:
        self.texts = {lang: {**PROMPTS[lang], **((overrides or {}).get(lang) or {})} for lang in LANGUAGES}

    def text(self, lang: str, key: str, **values: str) -> str:
        template = self.texts.get(lang, self.texts["en"])[key]
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template



def language_from_speech(speech: str, languages: list[str]) -> str | None:
    words = _words(speech)
    for lang in languages:
        if any(w.startswith(k) for w in words for k in LANGUAGE_WORDS.get(lang, ())):
            return lang
    return None


def urgency_from_speech(speech: str) -> bool | None:
    """True for an emergency, False for "no", None when nothing was recognised."""
    words = _words(speech)
    if any(w in NOT_URGENT_WORDS for w in words):
        return False
    if any(w in URGENT_WORDS or w.startswith(URGENT_STEMS) for w in words):
        return True
    return None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", (text or "").lower())
