"""Text of scanned pages (fax, paper post) by OCR: tesseract through pytesseract.

PDF pages are rendered with ``pdftoppm`` (poppler-utils), multi-page TIFF is read frame by
frame with Pillow. OCR is optional (the ``ocr`` extra plus the tesseract program); without
it ``ocr_document`` says so plainly in ``OcrResult.error`` and returns no text, so a
message is still registered with its pages attached.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCAN_TYPES = {"application/pdf", "image/tiff", "image/tif", "image/png", "image/jpeg", "image/gif", "image/bmp"}


@dataclass(slots=True)
class OcrResult:
    text: str
    pages: int
    languages: str
    error: str | None = None

    def to_meta(self) -> dict[str, Any]:
        return {"pages": self.pages, "languages": self.languages, "error": self.error, "chars": len(self.text)}


def ocr_unavailable_reason(needs_pdf: bool = False) -> str | None:
    """None when OCR can run here, else why not (in words for an operator)."""
    try:
        import pytesseract  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError:
        return "OCR is not installed (install the 'ocr' extra: pytesseract and Pillow)"
    if shutil.which("tesseract") is None:
        return "OCR is not installed (the tesseract program is missing)"
    if needs_pdf and shutil.which("pdftoppm") is None:
        return "PDF pages cannot be read (pdftoppm from poppler-utils is missing)"
    return None


def is_scan(content_type: str, filename: str = "") -> bool:
    ctype = content_type.split(";")[0].strip().lower()
    return ctype in SCAN_TYPES or filename.lower().endswith((".pdf", ".tif", ".tiff"))


def page_images(data: bytes, content_type: str, max_pages: int, dpi: int = 300, timeout: float = 120) -> list[Any]:
    """The pages of a PDF or (multi-page) image as Pillow images, at most ``max_pages``."""
    from PIL import Image, ImageSequence

    if content_type.split(";")[0].strip().lower() == "application/pdf" or data[:5] == b"%PDF-":
        if shutil.which("pdftoppm") is None:
            raise RuntimeError("pdftoppm (poppler-utils) is not installed")
        with tempfile.TemporaryDirectory(prefix="ocr-") as tmp:
            source = Path(tmp) / "in.pdf"
            source.write_bytes(data)
            subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", "-l", str(max_pages), str(source),
                            str(Path(tmp) / "page")], check=True, capture_output=True, timeout=timeout)
            pages = []
            for path in sorted(Path(tmp).glob("page*.png")):
                with Image.open(path) as img:
                    pages.append(img.copy())
            return pages
    image = Image.open(io.BytesIO(data))
    return [frame.copy() for _, frame in zip(range(max_pages), ImageSequence.Iterator(image))]


def ocr_document(data: bytes, content_type: str, languages: str = "rus+pol+eng", max_pages: int = 20,
                 timeout_seconds: float = 120) -> OcrResult:
    """OCR every page of one scanned document. Blocking: run it with ``asyncio.to_thread``."""
    reason = ocr_unavailable_reason(needs_pdf=content_type.split(";")[0].strip().lower() == "application/pdf")
    if reason:
        return OcrResult("", 0, languages, reason)
    import pytesseract

    try:
        pages = page_images(data, content_type, max_pages, timeout=timeout_seconds)
        texts = [pytesseract.image_to_string(page, lang=languages, timeout=timeout_seconds).strip() for page in pages]
    except Exception as exc:  # a broken scan is registered without text, with the reason
        return OcrResult("", 0, languages, f"OCR failed: {type(exc).__name__}: {exc}")
    return OcrResult("\n\n".join(t for t in texts if t), len(pages), languages)
