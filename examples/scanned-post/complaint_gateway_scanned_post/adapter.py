"""A drop folder where a scanning centre puts paper letters: scans plus a metadata file.

Each letter is ``<letter_id>.json`` (written last: it is the commit marker) naming its
scans (PDF or TIFF) in the same folder. The adapter OCRs the pages, delivers the letter,
and only after ``deliver()`` returned moves the files to ``processed/`` — the move is
the cursor. A letter whose metadata is unusable is moved to ``rejected/`` with a
``.reason.txt`` beside it: never silently dropped.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gateway.sdk import Inbound, InboundAttachment, PullAdapter, is_scan, ocr_document, safe_filename

CONTENT_TYPES = {".pdf": "application/pdf", ".tif": "image/tiff", ".tiff": "image/tiff",
                 ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class LetterRejected(ValueError):
    """The letter's metadata or scans cannot be used; the reason goes beside the files."""


class ScannedPostAdapter(PullAdapter):
    name = "scanned_post"
    version = "1.0"
    description = "Paper letters scanned into a drop folder (PDF/TIFF + JSON metadata), read by OCR."
    capabilities = frozenset({"pull", "attachments", "ocr"})
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["drop_folder"],
        "properties": {
            "drop_folder": {"type": "string"},
            "processed_folder": {"type": "string"},
            "rejected_folder": {"type": "string"},
            "ocr_languages": {"type": "string"},
            "ocr_max_pages": {"type": "integer", "minimum": 1},
            "max_scan_bytes": {"type": "integer", "minimum": 1},
            "max_letters_per_cycle": {"type": "integer", "minimum": 1},
            **PullAdapter.LOOP_SETTINGS,
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        s = self.settings
        self.drop = Path(s["drop_folder"])
        self.processed = Path(s.get("processed_folder") or self.drop / "processed")
        self.rejected = Path(s.get("rejected_folder") or self.drop / "rejected")
        self.languages = s.get("ocr_languages", "rus+pol+eng")
        self.max_pages = int(s.get("ocr_max_pages", 20))
        self.max_scan_bytes = int(s.get("max_scan_bytes", 50 * 1024 * 1024))
        self.batch = int(s.get("max_letters_per_cycle", 50))
        if "poll_interval_seconds" not in s:
            self.poll_interval = 10.0

    async def pull(self) -> None:
        for folder in (self.processed, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        for marker in sorted(self.drop.glob("*.json"))[: self.batch]:
            try:
                letter = self._read_letter(marker)
            except LetterRejected as exc:
                self._reject(marker, str(exc))
                continue
            inbound = await self._inbound(marker, letter)
            await self.deliver(inbound)  # TemporaryFailure propagates: the files stay for the next cycle
            self._move(marker, letter["scans"], self.processed)

    def _read_letter(self, marker: Path) -> dict[str, Any]:
        try:
            letter = json.loads(marker.read_bytes())
        except (OSError, ValueError) as exc:
            raise LetterRejected(f"metadata is not valid JSON: {exc}") from exc
        if not isinstance(letter, dict) or not isinstance(letter.get("letter_id"), str) or not letter["letter_id"]:
            raise LetterRejected("metadata has no letter_id")
        scans = letter.get("scans") or []
        if not isinstance(scans, list) or not scans or not all(isinstance(s, str) for s in scans):
            raise LetterRejected("metadata names no scans")
        for scan in scans:
            path = self.drop / safe_filename(scan)
            if path.name != scan or not path.is_file():
                raise LetterRejected(f"scan {scan!r} is missing")
            if path.stat().st_size > self.max_scan_bytes:
                raise LetterRejected(f"scan {scan!r} is larger than {self.max_scan_bytes} bytes")
        return letter

    async def _inbound(self, marker: Path, letter: dict[str, Any]) -> Inbound:
        sender = letter.get("sender") or {}
        attachments, texts, ocr = [], [], []
        for scan in letter["scans"]:
            data = (self.drop / scan).read_bytes()
            ctype = CONTENT_TYPES.get(Path(scan).suffix.lower(), "application/octet-stream")
            attachments.append(InboundAttachment(filename=scan, content_type=ctype, data=data, size=len(data)))
            if is_scan(ctype, scan):
                result = await asyncio.to_thread(ocr_document, data, ctype, self.languages, self.max_pages)
                ocr.append({"scan": scan, **result.to_meta()})
                texts.append(result.text)
        identities = [(kind, str(sender[key])) for kind, key in
                      (("phone", "phone"), ("email", "email"), ("account", "account")) if sender.get(key)]
        return Inbound(
            channel=self.instance,
            message_id=letter["letter_id"],
            identities=identities,
            name=sender.get("name"),
            subject=letter.get("subject"),
            text="\n\n".join(t for t in texts if t),
            attachments=attachments,
            raw=marker.read_bytes(),
            raw_content_type="application/json",
            language=letter.get("language"),
            received_at=_received(letter.get("received_date")),
            meta={"door": "post", "postal_address": sender.get("address"), "ocr": ocr},
        )

    def _move(self, marker: Path, scans: list[str], folder: Path) -> None:
        # the marker first: it is the cursor. A crash after it leaves only scan files
        # behind, which no later cycle reads; a crash before it means a redelivery.
        os.replace(marker, folder / marker.name)
        for scan in scans:
            if (self.drop / scan).exists():
                os.replace(self.drop / scan, folder / scan)

    def _reject(self, marker: Path, reason: str) -> None:
        self.context.metrics.rejected.labels(self.instance, "malformed").inc()
        self.log.warning("letter rejected", extra={"channel": self.instance, "file": marker.name, "reason": reason})
        shutil.move(str(marker), self.rejected / marker.name)
        (self.rejected / (marker.name + ".reason.txt")).write_text(reason + "\n", encoding="utf-8")


def _received(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return datetime.now(timezone.utc)
