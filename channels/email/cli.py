"""``complaint-gateway parse-email FILE...``: each mail file as one normalised complaint,
one JSON line per file in order, without touching the registry (for debugging and scoring)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from channels.email.convert import mail_to_inbound
from normalizer.pipeline import Normalizer


def add_parse_email_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    if "parse-email" in subparsers.choices:  # both e-mail adapters offer it; add it once
        return
    parser = subparsers.add_parser("parse-email", help="print each mail file as a normalised complaint (JSON line)")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--channel", default="email", help="channel name to put in the complaints (default: email)")
    parser.set_defaults(func=cmd_parse_email)


def parse_file(path: Path, normalizer: Normalizer, channel: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
    try:
        inbound = mail_to_inbound(raw, channel, date_as_received=True)
        return normalizer.normalize(inbound).to_dict()
    except Exception as exc:  # one bad file must not hide the others: it gets an error line
        return {"file": str(path), "error": f"{type(exc).__name__}: {exc}"}


def cmd_parse_email(args: argparse.Namespace) -> int:
    normalizer = Normalizer()
    failed = 0
    for name in args.files:
        record = parse_file(Path(name), normalizer, args.channel)
        failed += "error" in record
        sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
    return 1 if failed else 0
