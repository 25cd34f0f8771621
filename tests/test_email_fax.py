"""Fax-to-email: rules mark a fax gateway's mail, the fax number becomes the customer's phone,
the pages stay attachments and their text is read by a real tesseract (PDF via pdftoppm,
multi-page TIFF via Pillow) on pages this test renders itself."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from channels.email.convert import mail_to_inbound
from channels.email.fax import FaxSettings, mark_fax, read_pages
from gateway import ocr as gateway_ocr
from gateway.config import ConfigError
from tests.conftest import registry_of
from tests.test_email_support import adapter_of, make_mail, relay_fixture, smtp_channel, smtp_send  # noqa: F401

FAX_RULES = {"rules": [{"name": "gateway", "from_domains": ["faxgw.example"],
                        "subject_pattern": r"Fax from (?P<number>\+?[\d ()-]{6,})"}]}


def _page(*lines: str) -> Image.Image:
    font = ImageFont.load_default(size=44)
    image = Image.new("L", (1600, 140 + 90 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 60 + 90 * i), line, font=font, fill=0)
    return image


def _tiff(*pages: Image.Image) -> bytes:
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=list(pages[1:]), compression="tiff_deflate")
    return out.getvalue()


def _pdf(*pages: Image.Image) -> bytes:
    out = io.BytesIO()
    pages[0].convert("RGB").save(out, format="PDF", save_all=True, append_images=[p.convert("RGB") for p in pages[1:]],
                                 resolution=150)
    return out.getvalue()


def _fax_mail(attachments) -> bytes:
    return make_mail("Fax received, 2 pages.", sender="Fax Gateway <fax@faxgw.example>",
                     subject="Fax from +48 22 123 45 67", attachments=attachments)


async def test_fax_mail_is_read_by_ocr_and_the_fax_number_is_the_customer(make_config, start_gateway, relay):
    tiff = _tiff(_page("Complaint about invoice 4711"), _page("The meter reading is wrong"))
    pdf = _pdf(_page("Second document charged twice"))
    channel = smtp_channel(relay.port, fax=FAX_RULES)
    client = await start_gateway(make_config(channels={"email": channel}))
    adapter = adapter_of(client, "email")
    session = await smtp_send(adapter.port, _fax_mail([("pages.tif", "image/tiff", tiff), ("more.pdf", "application/pdf", pdf)]),
                              ["complaints@operator.example"])
    assert session.data[0] == 250
    events = await registry_of(client).read_events("t", "c")
    complaint = events[0].payload["complaint"]
    assert complaint["meta"]["door"] == "fax" and complaint["channel"] == "email"
    assert complaint["customer"]["identities"] == [{"kind": "phone", "value": "+48221234567"}]
    fax = complaint["meta"]["fax"]
    assert fax["number"] == "+48 22 123 45 67" and fax["ocr"] == "done" and fax["ocr_pages"] == 3
    text = complaint["text"].lower()
    for word in ("invoice", "4711", "meter", "reading", "charged", "twice"):
        assert word in text
    assert fax["mail_text"] == "Fax received, 2 pages."
    assert [a["filename"] for a in complaint["attachments"]] == ["pages.tif", "more.pdf"]
    await adapter.drain()
    assert relay.messages.qsize() == 0  # the fax gateway's address is not the customer's: no mail answer


def test_mail_not_matching_a_rule_stays_an_email():
    settings = FaxSettings.from_settings(FAX_RULES)
    inbound = mail_to_inbound(make_mail(subject="Fax from +48 22 123 45 67", sender="someone@example.pl"), "email")
    assert mark_fax(inbound, settings) is False
    assert inbound.meta["door"] == "email" and inbound.identities == [("email", "someone@example.pl")]


@pytest.mark.parametrize(("pattern", "why"), [
    (r"Fax from (\+?[\d ]+", "not a valid regular expression"),
    (r"Fax from (\d+\s?)+ pages", "repeats a part that repeats itself"),  # exponential on a long subject
])
def test_a_subject_pattern_that_cannot_be_used_safely_is_a_config_error(pattern, why):
    with pytest.raises(ConfigError, match=re.escape("channels.mail.fax.rules[0].subject_pattern") + ".*" + why):
        FaxSettings.from_settings({"rules": [{"from_domains": ["faxgw.example"], "subject_pattern": pattern}]}, "channels.mail")


def test_rule_needs_pages_unless_told_otherwise():
    inbound = mail_to_inbound(_fax_mail([]), "email")
    assert mark_fax(inbound, FaxSettings.from_settings(FAX_RULES)) is False
    no_pages_rule = {"rules": [{"from_addresses": ["fax@faxgw.example"], "require_pages": False}]}
    assert mark_fax(inbound, FaxSettings.from_settings(no_pages_rule)) is True
    assert inbound.meta["fax"]["number"] is None and inbound.identities == []


def test_without_ocr_meta_says_so_plainly(monkeypatch):
    inbound = mail_to_inbound(_fax_mail([("pages.tif", "image/tiff", _tiff(_page("Invoice 4711")))]), "email")
    settings = FaxSettings.from_settings(FAX_RULES)
    assert mark_fax(inbound, settings)
    monkeypatch.setattr(gateway_ocr.shutil, "which", lambda name: None)
    text, info = read_pages(inbound.attachments, settings)
    assert text == "" and info == {"ocr": "OCR is not installed (the tesseract program is missing)"}
    off = FaxSettings.from_settings({**FAX_RULES, "ocr": False})
    assert read_pages(inbound.attachments, off) == ("", {"ocr": "off (fax.ocr is false)"})


def test_an_unreadable_page_is_reported_and_the_others_still_read():
    good = ("good.tif", "image/tiff", _tiff(_page("Invoice 4711 is wrong")))
    broken = ("broken.pdf", "application/pdf", b"%PDF-1.4 this is not a pdf")
    inbound = mail_to_inbound(_fax_mail([broken, good]), "email")
    settings = FaxSettings.from_settings(FAX_RULES)
    mark_fax(inbound, settings)
    text, info = read_pages(inbound.attachments, settings)
    assert "4711" in text and info["ocr_pages"] == 1
    assert info["ocr_errors"][0].startswith("broken.pdf:")
