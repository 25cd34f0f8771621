"""The scanned-post adapter, tested with the gateway's own kit: the conformance suite
plus OCR of real scans (rendered here, read by tesseract)."""
from __future__ import annotations

import io
import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from gateway.testing.conformance import Expect, PullAdapterConformance, PullHarness, open_pull_harness

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LETTERS = [
    ("Nie mam internetu od tygodnia", "pl", "+48 601 234 567", "Jan Kowalski"),
    ("Счёт за газ выставлен дважды", "ru", "+7 916 123-45-67", "Анна Петрова"),
]


def render_page(text: str) -> Image.Image:
    page = Image.new("L", (1700, 500), 255)
    ImageDraw.Draw(page).text((80, 180), text, fill=0, font=ImageFont.truetype(FONT, 64))
    return page


def scan_bytes(lines: list[str], kind: str) -> bytes:
    pages = [render_page(line) for line in lines]
    out = io.BytesIO()
    if kind == "pdf":
        pages[0].save(out, "PDF", resolution=150, save_all=True, append_images=pages[1:])
    else:
        pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    return out.getvalue()


def drop_letter(folder: Path, letter_id: str, text: str, phone: str, name: str, kind: str = "tif",
                extra_pages: list[str] | None = None) -> None:
    scan = f"{letter_id}.{kind}"
    (folder / scan).write_bytes(scan_bytes([text, *(extra_pages or [])], "pdf" if kind == "pdf" else "tif"))
    (folder / f"{letter_id}.json").write_text(json.dumps({
        "letter_id": letter_id, "received_date": "2026-11-20T10:00:00+03:00", "scans": [scan],
        "sender": {"name": name, "phone": phone, "address": "ul. Prosta 1, Warszawa"}}))


class TestScannedPostConformance(PullAdapterConformance):
    adapter = "scanned_post"
    instance = "post"

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "drop"
        self.folder.mkdir()

    async def channel_settings(self) -> dict:
        return {"drop_folder": str(self.folder), "ocr_languages": "pol+rus+eng"}

    async def put_message(self, index: int) -> None:
        text, _, phone, name = LETTERS[index]
        drop_letter(self.folder, f"letter-{index}", text, phone, name)

    def expect(self, index: int) -> Expect:
        text, lang, phone, name = LETTERS[index]
        return Expect(identities=[("phone", phone.replace(" ", "").replace("-", ""))], name=name, attachments=1,
                      text_contains=["internetu"] if lang == "pl" else ["газ"])


async def test_pdf_pages_are_read_and_letter_moved_after_delivery(harness_factory) -> None:
    harness, folder = await harness_factory()
    drop_letter(folder, "L-7", "Awaria linii telefonicznej", "+48 601 234 567", "Ewa Nowak", kind="pdf",
                extra_pages=["Prosze o naprawe"])
    await harness.pull()
    events = await harness.events()
    complaint = events[0].payload["complaint"]
    assert "telefonicznej" in complaint["text"] and "naprawe" in complaint["text"]
    assert complaint["meta"]["ocr"][0]["pages"] == 2
    assert complaint["meta"]["door"] == "post"
    assert complaint["received_at"] == "2026-11-20T07:00:00Z"
    assert not (folder / "L-7.json").exists() and (folder / "processed" / "L-7.json").exists()
    assert (folder / "processed" / "L-7.pdf").exists()


async def test_unusable_metadata_is_rejected_with_a_reason_not_dropped(harness_factory) -> None:
    harness, folder = await harness_factory()
    (folder / "bad.json").write_text("{not json")
    (folder / "orphan.json").write_text(json.dumps({"letter_id": "orphan", "scans": ["missing.pdf"]}))
    await harness.pull()
    assert await harness.registry.queue_length() == 0
    assert (folder / "rejected" / "bad.json").read_text() == "{not json"
    assert "not valid JSON" in (folder / "rejected" / "bad.json.reason.txt").read_text()
    assert "missing" in (folder / "rejected" / "orphan.json.reason.txt").read_text()


@pytest.fixture
async def harness_factory(make_config, tmp_path: Path):
    """The conformance harness, reused for the adapter's own tests."""
    folder = tmp_path / "drop"
    folder.mkdir()
    config = make_config(channels={"post": {"adapter": "scanned_post", "drop_folder": str(folder)}})
    async with AsyncExitStack() as stack:
        async def make() -> tuple[PullHarness, Path]:
            return await stack.enter_async_context(open_pull_harness(config, "post")), folder

        yield make
