"""HTML-only messages become readable plain text, links kept as ``text [url]``."""
from __future__ import annotations

from inscriptis import get_text
from inscriptis.model.config import ParserConfig

from normalizer.pipeline import Draft, NormalizerSettings

_CONFIG = ParserConfig(display_links=True, display_images=False)


def html_to_text(html: str) -> str:
    return get_text(html, _CONFIG)


def step(draft: Draft, settings: NormalizerSettings) -> None:
    inbound = draft.inbound
    if not (inbound.text or "").strip() and (inbound.html or "").strip():
        draft.complaint.text = html_to_text(inbound.html or "")
        draft.complaint.meta.setdefault("text_from", "html")
