"""Mail to Inbound: charsets, bodies, quotes, attachments, identities, keys, loop rules and
threading, each on a small hand-written fixture of the case it covers."""
from __future__ import annotations

import re

import pytest

from channels.email.charsets import decode_bytes, decode_header_value, detect
from channels.email.convert import ConvertOptions, mail_to_inbound
from channels.email.loops import automatic_rule
from channels.email.mime import MailLimits, parse_mail
from channels.email.quotes import separate
from channels.email.threads import acknowledgement_message_id
from normalizer.pipeline import Normalizer
from tests.test_email_support import fixture_bytes, make_mail

NUMBER = re.compile(r"(?<![\w-])\d{4}-\d{6,}(?![\w-])")


def complaint_of(name: str, **options):
    inbound = mail_to_inbound(fixture_bytes(name), "email", ConvertOptions(**options))
    return inbound, Normalizer().normalize(inbound)


@pytest.mark.parametrize("fixture, name, subject, text", [
    ("koi8r.eml", "Иван Петров", "Жалоба на связь", "Уже неделю нет связи, прошу разобраться."),
    ("windows1250.eml", "Jan Kowalski", "Reklamacja faktury za wrzesień", "ściągnięto opłatę za usługę"),
    ("iso-gb2312.eml", "王先生", "宽带投诉", "我家的宽带已经断了三天"),
    ("8bit-headers.eml", "Ольга Смирнова", "Жалоба на счёт", "Мне выставили счёт дважды."),
    ("utf7.eml", "Hans Meier", "Beschwerde", "Die Übermittlung ist fehlgeschlagen"),
    ("iso2022jp.eml", "岡本和正", "メルマガ解除", "①１都３県の鯵と"),
])
def test_charsets_people_send_decode_without_replacement_characters(fixture, name, subject, text):
    _, complaint = complaint_of(fixture)
    assert complaint.customer.name == name
    assert complaint.subject == subject
    assert text in complaint.text
    assert "\ufffd" not in complaint.text + complaint.subject + name


def _encodable(texts, charsets):
    for text in texts:
        for charset in charsets:
            try:
                yield text, charset, text.encode(charset)
            except UnicodeEncodeError:  # not every charset writes every language
                continue


@pytest.mark.parametrize("text, charset, data", list(_encodable(
    ["Привет", "Жалоба на интернет", "Zażółć gęślą jaźń", "Straße Überweisung", "你好世界"],
    ["cp1251", "koi8-r", "cp1250", "iso-8859-2", "gb2312"])))
def test_short_unlabelled_8bit_text_is_detected(text, charset, data):
    assert detect(data)[0] == text


def test_declared_charset_that_does_not_fit_falls_back_to_detection():
    assert decode_bytes("Цена указана неверно".encode(), "iso-8859-1") == ("Цена указана неверно", "utf-8")
    assert decode_bytes("Счёт неверный".encode("cp1251"), "utf-8")[0] == "Счёт неверный"
    assert decode_bytes(b"plain", "x-no-such-charset") == ("plain", "ascii")


def test_broken_and_split_encoded_words():
    _, complaint = complaint_of("broken-words.eml")
    assert complaint.customer.name == "Hans BÄKOSchönland"  # whitespace between encoded words is not text
    assert complaint.subject.startswith("Привет")  # a UTF-8 character split across two words
    assert decode_header_value("=?utf-8?q?unterminated") == "=?utf-8?q?unterminated"


def test_html_only_mail_becomes_text_with_links():
    inbound, complaint = complaint_of("html-only.eml")
    assert "Moja faktura jest błędna." in complaint.text
    assert "https://example.org/f/42" in complaint.text
    assert "color:red" not in complaint.text
    assert inbound.html and complaint.meta["text_from"] == "html"


def test_a_stand_in_plain_part_loses_to_the_html_alternative():
    _, complaint = complaint_of("placeholder-plain.eml")
    assert "hotline never answers" in complaint.text
    assert "Read this mail in HTML" not in complaint.text


def test_quoted_history_is_separated_and_kept_the_signature_marked():
    _, complaint = complaint_of("reply-with-quote.eml")
    assert complaint.text.startswith("The router still blinks red.")
    assert "registered as 2025-000042" not in complaint.text
    assert complaint.meta["quoted"].startswith("On Mon, 3 Mar 2025")
    assert complaint.meta["signature"] == "Ivan Petrov\n+7 916 123-45-67"
    assert "+7 916 123-45-67" in complaint.text  # the customer's own words stay unless configured otherwise
    stripped = mail_to_inbound(fixture_bytes("reply-with-quote.eml"), "email",
                               ConvertOptions(limits=MailLimits(strip_signature=True)))
    assert stripped.text == "The router still blinks red."


def test_outlook_reply_header_starts_the_history():
    _, complaint = complaint_of("outlook-reply.eml")
    assert complaint.text == "Dziękuję, ale problem nadal występuje."
    assert "zarejestrowana" in complaint.meta["quoted"]


def test_unmarked_text_is_never_cut():
    text = "My neighbour wrote: the line is dead too.\n> a quote in the middle\nAnd then more of my words."
    assert separate(text).text == text


def test_attachments_safe_names_inline_images_and_forwarded_mail():
    inbound, complaint = complaint_of("attachments.eml")
    names = [(a.filename, a.content_type, a.inline) for a in inbound.attachments]
    assert ("faktura wrzesień.pdf", "application/pdf", False) in names  # RFC 2231, path stripped
    assert ("zdjęcie.jpg", "image/jpeg", False) in names  # RFC 2047 in a name= parameter
    assert ("attachment.png", "image/png", True) in names  # inline image: kept, not counted
    assert ("Twoja faktura.eml", "message/rfc822", False) in names
    assert [a.filename for a in complaint.attachments] == ["faktura wrzesień.pdf", "zdjęcie.jpg", "Twoja faktura.eml"]
    assert complaint.meta["forwarded"] == [{"subject": "Twoja faktura", "from": "complaints@operator.example", "date": None}]
    assert complaint.text == "Router nie działa, zdjęcie:"


def test_attachments_over_the_limits_are_recorded_not_dropped():
    limits = MailLimits(max_attachments=1, max_attachment_bytes=10)
    inbound = mail_to_inbound(fixture_bytes("attachments.eml"), "email", ConvertOptions(limits=limits))
    over = {(o["filename"], o["reason"]) for o in inbound.meta["attachments_over_limit"]}
    assert over == {("faktura wrzesień.pdf", "max_attachment_bytes"), ("Twoja faktura.eml", "max_attachments")}
    assert [a.filename for a in inbound.attachments if not a.inline] == ["zdjęcie.jpg"]
    assert all(o["sha256"] for o in inbound.meta["attachments_over_limit"])
    assert inbound.raw == fixture_bytes("attachments.eml")  # the bytes are in the stored original


def test_broken_header_folding_and_junk_before_headers():
    _, complaint = complaint_of("broken-folding.eml")
    assert complaint.customer.identities[0].value == "petr@example.cz"
    assert complaint.customer.name == "Novak, Petr"
    assert complaint.subject == "Stiznost"


def test_without_a_from_address_reply_to_is_the_customer():
    _, complaint = complaint_of("no-from.eml")
    assert [i.value for i in complaint.customer.identities] == ["real@example.cn"]
    assert complaint.customer.name is None  # the name goes with the address it names


def test_from_and_reply_to():
    raw = make_mail(sender="Anna Nowak <anna@example.pl>", headers={"Reply-To": "Biuro <biuro@example.pl>"})
    inbound = mail_to_inbound(raw, "email")
    assert inbound.identities == [("email", "anna@example.pl")] and inbound.name == "Anna Nowak"
    assert inbound.reply_to == ("email", "biuro@example.pl")


def test_encoded_local_part_is_unwrapped_only_when_plain():
    assert mail_to_inbound(b"From: =?utf-8?Q?agent?=@example.com\r\n\r\nx", "e").identities == [("email", "agent@example.com")]
    smuggled = mail_to_inbound(b"From: =?utf-8?Q?boss=40bank.example=3E?=@evil.example\r\n\r\nx", "e")
    assert ("email", "boss@bank.example") not in smuggled.identities


def test_message_key_ignores_trace_headers_but_not_content():
    raw = make_mail(message_id="<k@example.net>")
    one = mail_to_inbound(b"Delivered-To: a@operator.example\r\nReceived: by mx1\r\n" + raw, "box1")
    two = mail_to_inbound(b"Delivered-To: b@operator.example\r\nReceived: by mx2\r\n" + raw, "box2")
    other = mail_to_inbound(make_mail("Совсем другое письмо.", message_id="<k@example.net>"), "box1")
    assert one.message_id == two.message_id and one.message_id.startswith("k@example.net#")
    assert other.message_id != one.message_id


@pytest.mark.parametrize("headers, subject, rule", [
    ({"Auto-Submitted": "auto-generated"}, "Hello", "auto_submitted"),
    ({"X-Autorespond": "1"}, "Hello", "autoreply_header"),
    ({"Precedence": "junk"}, "Hello", "precedence"),
    ({"List-Id": "<news.example.com>"}, "Hello", "mailing_list"),
    ({}, "Автоответ: Нет на месте", "out_of_office_subject"),
    ({}, "Odpowiedź automatyczna: urlop", "out_of_office_subject"),
    ({}, "Out of Office: back Monday", "out_of_office_subject"),
    ({}, "Abwesenheitsnotiz: Urlaub", "out_of_office_subject"),
    ({"Auto-Submitted": "no"}, "Hello", None),
    ({}, "Re: my complaint about the office", None),
])
def test_loop_rules(headers, subject, rule):
    parsed = parse_mail(make_mail(subject=subject, headers=headers))
    assert automatic_rule(parsed) == rule


def test_delivery_reports_and_robot_senders_are_automatic():
    inbound = mail_to_inbound(fixture_bytes("dsn.eml"), "email")
    assert inbound.auto_submitted and inbound.meta["automatic_rule"] == "delivery_report"
    robot = parse_mail(make_mail(sender="postmaster@mx.example.net", subject="Hello"))
    assert automatic_rule(robot) == "robot_sender"


def test_threading_by_our_message_id_or_by_subject_number():
    options = ConvertOptions(number_pattern=NUMBER, ack_domains={"operator.example"})
    inbound = mail_to_inbound(fixture_bytes("reply-with-quote.eml"), "email", options)
    assert inbound.in_reply_to == "2025-000042" and inbound.meta["thread_by"] == "references"
    ack_id = acknowledgement_message_id("2026-000007", "operator.example")
    assert "2026-000007" in ack_id
    by_id = mail_to_inbound(make_mail(subject="Other", headers={"References": ack_id}), "email", options)
    assert by_id.in_reply_to == "2026-000007"
    foreign = mail_to_inbound(make_mail(subject="Other", headers={"In-Reply-To": ack_id.replace("operator", "evil")}),
                              "email", options)
    assert foreign.in_reply_to is None
    by_subject = mail_to_inbound(make_mail(subject="Re: Обращение 2026-000123 зарегистрировано"), "email", options)
    assert by_subject.in_reply_to == "2026-000123" and by_subject.meta["thread_by"] == "subject"


@pytest.mark.parametrize("header, name, address", [
    (b"From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>", "Bürling, Andreas", "smith@example.com"),
    (b'From: "Yangzhou Lighting " <>, "LTD" <ly@example.com>', "LTD", "ly@example.com"),
    (b"From: Test test@example.com", "Test", "test@example.com"),
    (b"From: MAILER-DAEMON (Mail Delivery System)", "Mail Delivery System", "MAILER-DAEMON"),
    (b"From: MAILER-DAEMON (Mail Delivery System) <postmaster@example.com>", "MAILER-DAEMON", "postmaster@example.com"),
    (b'From: "Marcus Smith (ABC)" <m@example.com>', "Marcus Smith (ABC)", "m@example.com"),
    (b'From: "Lottery transfer"@example.com>', None, '"Lottery transfer"@example.com'),
])
def test_from_header_shapes_seen_in_real_mail(header, name, address):
    parsed = parse_mail(header + b"\r\nSubject: x\r\n\r\nbody\r\n")
    assert (parsed.from_name, parsed.from_address) == (name, address)


def test_an_address_with_spaces_is_not_guessed_into_another_one():
    parsed = parse_mail(b'From: "your secret past" <power quadrant system@example.com>\r\n\r\nx')
    inbound = mail_to_inbound(parsed.message.as_bytes(), "email")
    complaint = Normalizer().normalize(inbound)
    assert complaint.customer.identities == []  # not "system@example.com": that could be someone else
    assert {"kind": "email", "value": "power quadrant system@example.com"} in complaint.meta["unusable_identities"]


@pytest.mark.parametrize(("plain", "html", "placeholder"), [
    ("Please read this message in HTML.", "<p>" + "Нет интернета в доме уже третий день подряд. " * 8 + "</p>", True),
    ("Нет интернета в доме уже третий день подряд.", "<html><head><style>p {color: red; font-family: Arial, sans-serif}"
     " td {padding: 4px; margin: 0 auto}</style></head><body><p>Нет интернета в доме уже третий день подряд.</p></body></html>",
     False),  # the stylesheet's words are no text
    ("Нет интернета в доме уже третий день подряд. Роутер мигает.",  # abridged near the line: rendered to decide
     "<p>Нет интернета в доме уже третий день подряд. Роутер мигает.</p><p>Прошу разобраться &amp; перезвонить"
     " мне по номеру из договора.</p>", True),
    ("One two three four five six seven eight nine ten.", "<div>One two three four five six seven eight nine ten.</div>"
     "<!-- a comment with many many words that nobody reads in the mail at all -->", False),
])
def test_a_short_plain_alternative_gives_way_to_the_html(plain: str, html: str, placeholder: bool) -> None:
    from channels.email.mime import MailLimits, _Collector, _is_placeholder
    from normalizer.steps.html_to_text import html_to_text

    rich = _Collector(MailLimits())
    rich.segments.append(("html", html))
    expected = len(re.findall(r"\w+", plain)) < len(re.findall(r"\w+", html_to_text(html))) * 0.6  # the definition
    assert _is_placeholder(plain, rich) is placeholder is expected
