"""The web form's HTML in ru, pl and en: accessible (labels, fieldsets, error summary
linked to fields, visible focus, sufficient contrast) and usable on a phone."""
from __future__ import annotations

from html import escape

STRINGS: dict[str, dict[str, str]] = {
    "ru": {
        "title": "Подать жалобу", "intro": "Опишите проблему. Мы сразу сообщим номер регистрации.",
        "name": "Ваше имя", "phone": "Телефон", "email": "Электронная почта", "account": "Номер лицевого счёта (если есть)",
        "subject": "Тема", "text": "Суть жалобы", "files": "Файлы (фото, документы)",
        "answer": "Как вам ответить", "by_email": "По электронной почте", "by_sms": "SMS", "by_phone": "Звонком",
        "send": "Отправить", "errors": "Исправьте, пожалуйста:", "required": "обязательное поле",
        "thanks": "Жалоба зарегистрирована", "number": "Номер регистрации", "keep": "Сохраните этот номер: он нужен, чтобы дополнить жалобу или узнать о её ходе.",
        "contact": "Укажите телефон или электронную почту",
        "registration_number": "Номер обращения, если вы его дополняете",
        "honeypot": "Не заполняйте это поле",
    },
    "pl": {
        "title": "Złóż reklamację", "intro": "Opisz problem. Od razu podamy numer rejestracyjny.",
        "name": "Imię i nazwisko", "phone": "Telefon", "email": "E-mail", "account": "Numer klienta (jeśli masz)",
        "subject": "Temat", "text": "Treść reklamacji", "files": "Pliki (zdjęcia, dokumenty)",
        "answer": "Jak mamy odpowiedzieć", "by_email": "E-mailem", "by_sms": "SMS-em", "by_phone": "Telefonicznie",
        "send": "Wyślij", "errors": "Popraw, proszę:", "required": "pole wymagane",
        "thanks": "Reklamacja zarejestrowana", "number": "Numer rejestracyjny", "keep": "Zachowaj ten numer: będzie potrzebny, aby uzupełnić reklamację lub sprawdzić jej status.",
        "contact": "Podaj telefon lub e-mail",
        "registration_number": "Numer reklamacji, jeśli ją uzupełniasz",
        "honeypot": "Nie wypełniaj tego pola",
    },
    "en": {
        "title": "Submit a complaint", "intro": "Describe the problem. You will get a registration number at once.",
        "name": "Your name", "phone": "Phone", "email": "E-mail", "account": "Account number (if you have one)",
        "subject": "Subject", "text": "Your complaint", "files": "Files (photos, documents)",
        "answer": "How should we answer", "by_email": "By e-mail", "by_sms": "By SMS", "by_phone": "By phone call",
        "send": "Send", "errors": "Please correct:", "required": "required",
        "thanks": "Complaint registered", "number": "Registration number", "keep": "Keep this number: you need it to add to your complaint or to ask about it.",
        "contact": "Give a phone number or an e-mail address",
        "registration_number": "Complaint number, if you are adding to one",
        "honeypot": "Leave this field empty",
    },
}

STYLE = """
body{font:1rem/1.5 system-ui,sans-serif;margin:0;padding:1rem;color:#1a1a1a;background:#fff}
main{max-width:40rem;margin:auto}
label{display:block;font-weight:600;margin-top:1rem}
input,textarea,select{width:100%;box-sizing:border-box;font:inherit;padding:.5rem;border:2px solid #555;border-radius:4px}
textarea{min-height:10rem}
input:focus,textarea:focus,button:focus,a:focus{outline:3px solid #0b5fff;outline-offset:2px}
fieldset{border:0;padding:0;margin:1rem 0 0}
fieldset label{display:inline;font-weight:400;margin:0 1rem 0 .25rem}
fieldset input{width:auto}
button{margin-top:1.5rem;font:inherit;font-weight:700;padding:.75rem 2rem;background:#0b5fff;color:#fff;border:0;border-radius:4px}
.errors{border:3px solid #b00020;padding:.5rem 1rem;margin:1rem 0}
.error{color:#b00020;font-weight:600}
.hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}
.number{font-size:2rem;font-weight:700;letter-spacing:.05em}
nav a{margin-right:1rem}
"""


def _page(lang: str, title: str, body: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>")


def form_page(lang: str, action: str, token: str, values: dict[str, str] | None = None,
              errors: dict[str, str] | None = None) -> str:
    s = STRINGS[lang]
    v = {k: escape(str(val)) for k, val in (values or {}).items()}
    errors = errors or {}

    def field(name: str, kind: str = "text", required: bool = False, autocomplete: str = "") -> str:
        err = errors.get(name)
        described = f' aria-describedby="{name}-error" aria-invalid="true"' if err else ""
        req = " required" if required else ""
        auto = f' autocomplete="{autocomplete}"' if autocomplete else ""
        label = s[name] + (' <span aria-hidden="true">*</span>' if required else "")
        html = f'<label for="{name}">{label}</label>'
        if kind == "textarea":
            html += f'<textarea id="{name}" name="{name}"{req}{described}>{v.get(name, "")}</textarea>'
        else:
            html += f'<input id="{name}" name="{name}" type="{kind}" value="{v.get(name, "")}"{req}{auto}{described}>'
        if err:
            html += f'<p class="error" id="{name}-error">{escape(err)}</p>'
        return html

    summary = ""
    if errors:
        items = "".join(f'<li><a href="#{escape(k)}">{escape(s.get(k, k))}: {escape(m)}</a></li>' for k, m in errors.items())
        summary = f'<div class="errors" role="alert" tabindex="-1"><p>{s["errors"]}</p><ul>{items}</ul></div>'
    chosen = v.get("preferred_channel", "email")
    radios = "".join(
        f'<input type="radio" id="pc-{key}" name="preferred_channel" value="{key}"{" checked" if chosen == key else ""}>'
        f'<label for="pc-{key}">{s[label]}</label>'
        for key, label in (("email", "by_email"), ("sms", "by_sms"), ("phone", "by_phone")))
    langs = "".join(f'<a href="?lang={code}" lang="{code}">{code.upper()}</a>' for code in STRINGS if code != lang)
    body = (
        f'<nav aria-label="language">{langs}</nav><h1>{s["title"]}</h1><p>{s["intro"]}</p>{summary}'
        f'<form method="post" action="{escape(action)}" enctype="multipart/form-data" novalidate>'
        f'<input type="hidden" name="lang" value="{lang}"><input type="hidden" name="idempotency_key" value="{escape(token)}">'
        + field("name", autocomplete="name") + field("phone", "tel", autocomplete="tel")
        + field("email", "email", autocomplete="email") + field("account")
        + f'<fieldset><legend><strong>{s["answer"]}</strong></legend>{radios}</fieldset>'
        + field("registration_number") + field("subject") + field("text", "textarea", required=True)
        + f'<label for="attachments">{s["files"]}</label><input id="attachments" name="attachments" type="file" multiple>'
        + f'<div class="hp" aria-hidden="true"><label for="website">{s["honeypot"]}</label>'
          f'<input id="website" name="website" type="text" tabindex="-1" autocomplete="off"></div>'
        + f'<button type="submit">{s["send"]}</button></form>'
    )
    return _page(lang, s["title"], body)


def receipt_page(lang: str, registration_number: str, acknowledgement: str) -> str:
    s = STRINGS[lang]
    body = (f'<h1>{s["thanks"]}</h1><p>{s["number"]}:</p><p class="number" id="registration-number">'
            f'{escape(registration_number)}</p><p>{escape(acknowledgement)}</p><p>{s["keep"]}</p>')
    return _page(lang, s["thanks"], body)


def message_page(lang: str, title: str, text: str) -> str:
    return _page(lang, title, f'<h1>{escape(title)}</h1><p role="alert">{escape(text)}</p>')
