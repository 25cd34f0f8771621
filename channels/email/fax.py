"""Fax-to-email: recognise mail from a fax gateway, take the fax number as the customer's
phone, keep the pages as attachments and read their text by OCR.

OCR is optional (the ``ocr`` extra: pytesseract and Pillow, plus the tesseract program;
PDF pages need pdftoppm from poppler). Without it the complaint still registers, and
``meta["fax"]["ocr"]`` says plainly why there is no text. OCR is slow: call
``read_pages`` off the event loop.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.config import compile_pattern
from gateway.inbound import Inbound, InboundAttachment
from gateway.ocr import ocr_unavailable_reason, page_images

PAGE_TYPES = ("application/pdf", "image/tiff", "image/tif", "image/x-tiff", "image/png", "image/jpeg")

RULE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "from_addresses": {"type": "array", "items": {"type": "string"}},
        "from_domains": {"type": "array", "items": {"type": "string"}},
        "subject_pattern": {"type": "string"},
        "require_pages": {"type": "boolean"},
    },
}
FAX_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "rules": {"type": "array", "items": RULE_SCHEMA},
        "ocr": {"type": "boolean"},
        "ocr_languages": {"type": "string"},
        "ocr_max_pages": {"type": "integer", "minimum": 1},
        "ocr_dpi": {"type": "integer", "minimum": 72, "maximum": 600},
        "ocr_timeout_seconds": {"type": "number", "minimum": 1},
    },
}


@dataclass(slots=True)
class FaxRule:
    """One way to recognise a fax gateway's mail; every condition given must hold."""

    name: str
    from_addresses: frozenset[str]
    from_domains: frozenset[str]
    subject_pattern: re.Pattern[str] | None
    require_pages: bool = True

    @classmethod
    def from_settings(cls, index: int, rule: dict[str, Any], where: str = "fax.rules") -> FaxRule:
        pattern = rule.get("subject_pattern")
        return cls(name=rule.get("name") or f"rule{index + 1}",
                   from_addresses=frozenset(a.lower() for a in rule.get("from_addresses") or []),
                   from_domains=frozenset(d.lower().lstrip("@") for d in rule.get("from_domains") or []),
                   subject_pattern=compile_pattern(pattern, f"{where}[{index}].subject_pattern", re.IGNORECASE)
                   if pattern else None,
                   require_pages=bool(rule.get("require_pages", True)))

    def match(self, sender: str, subject: str, attachments: list[InboundAttachment]) -> re.Match[str] | bool:
        sender = sender.lower()
        if self.from_addresses and sender not in self.from_addresses:
            return False
        if self.from_domains and sender.rpartition("@")[2] not in self.from_domains:
            return False
        if self.require_pages and not pages_of(attachments):
            return False
        if self.subject_pattern is not None:
            return self.subject_pattern.search(subject) or False
        return bool(self.from_addresses or self.from_domains)


@dataclass(slots=True)
class FaxSettings:
    rules: list[FaxRule]
    ocr: bool = True
    languages: str = "rus+pol+eng"
    max_pages: int = 20
    dpi: int = 300
    timeout: float = 120.0

    @classmethod
    def from_settings(cls, fax: dict[str, Any] | None, where: str = "channel") -> FaxSettings:
        fax = fax or {}
        return cls(rules=[FaxRule.from_settings(i, r, f"{where}.fax.rules") for i, r in enumerate(fax.get("rules") or [])],
                   ocr=bool(fax.get("ocr", True)), languages=fax.get("ocr_languages", "rus+pol+eng"),
                   max_pages=int(fax.get("ocr_max_pages", 20)), dpi=int(fax.get("ocr_dpi", 300)),
                   timeout=float(fax.get("ocr_timeout_seconds", 120)))


def pages_of(attachments: list[InboundAttachment]) -> list[InboundAttachment]:
    return [a for a in attachments if not a.inline and a.data
            and (a.content_type.lower() in PAGE_TYPES or a.filename.lower().endswith((".pdf", ".tif", ".tiff")))]


def mark_fax(inbound: Inbound, settings: FaxSettings) -> bool:
    """Make ``inbound`` a fax when a rule matches: door ``fax``, the fax number as the
    customer's phone (the gateway's address is not theirs), pages kept as attachments."""
    sender = next((v for k, v in inbound.identities if k == "email"), "")
    for rule in settings.rules:
        matched = rule.match(sender, inbound.subject or "", inbound.attachments)
        if not matched:
            continue
        number = None
        if isinstance(matched, re.Match):
            groups = matched.groupdict()
            number = (groups.get("number") or "").strip() or None
        inbound.meta["door"] = "fax"
        inbound.meta["fax"] = {"rule": rule.name, "gateway": sender or None, "number": number,
                               "pages": len(pages_of(inbound.attachments))}
        inbound.identities = [("phone", number)] if number else []
        inbound.reply_to = ("phone", number) if number else None
        return True
    return False


# -- OCR (gateway.ocr reads the pages) ----------------------------------------------------------
def read_pages(attachments: list[InboundAttachment], settings: FaxSettings) -> tuple[str, dict[str, Any]]:
    """The OCR text of every page (blocking; run it in a thread) and what happened."""
    pages = pages_of(attachments)
    if not settings.ocr:
        return "", {"ocr": "off (fax.ocr is false)"}
    reason = ocr_unavailable_reason(any(_is_pdf(a) for a in pages))
    if reason:
        return "", {"ocr": reason}
    import pytesseract

    texts: list[str] = []
    done = 0
    errors: list[str] = []
    for attachment in pages:
        try:
            for image in _images(attachment, settings):
                if done >= settings.max_pages:
                    break
                texts.append(pytesseract.image_to_string(image, lang=settings.languages, timeout=settings.timeout).strip())
                done += 1
        except Exception as exc:  # one unreadable page must not lose the others
            errors.append(f"{attachment.filename}: {type(exc).__name__}: {exc}")
    info: dict[str, Any] = {"ocr": "done", "ocr_pages": done, "ocr_languages": settings.languages}
    if errors:
        info["ocr_errors"] = errors
    if done >= settings.max_pages:
        info["ocr_truncated_at_pages"] = settings.max_pages
    return "\n\n".join(t for t in texts if t), info


def _is_pdf(attachment: InboundAttachment) -> bool:
    return attachment.content_type.lower() == "application/pdf" or attachment.filename.lower().endswith(".pdf")


def _images(attachment: InboundAttachment, settings: FaxSettings) -> list[Any]:
    ctype = "application/pdf" if _is_pdf(attachment) else attachment.content_type
    return page_images(attachment.data or b"", ctype, settings.max_pages, dpi=settings.dpi, timeout=settings.timeout)
