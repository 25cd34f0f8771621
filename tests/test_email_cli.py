"""``complaint-gateway parse-email``: one JSON line per file, in order, registry untouched."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_email_support import FIXTURES

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def test_parse_email_prints_one_line_per_file_in_order(tmp_path: Path):
    missing = tmp_path / "missing.eml"
    files = [FIXTURES / "koi8r.eml", missing, FIXTURES / "windows1250.eml"]
    proc = subprocess.run([*GATEWAY, "parse-email", *map(str, files)], capture_output=True, text=True, cwd=tmp_path, check=False,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])})
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and proc.returncode == 1
    first, error, third = (json.loads(line) for line in lines)
    assert first["subject"] == "Жалоба на связь" and first["received_at"] == "2025-03-03T07:00:00Z"
    assert first["customer"]["identities"] == [{"kind": "email", "value": "ivan@example.ru"}]
    assert first["registration_number"] is None
    assert error["file"] == str(missing) and "cannot read" in error["error"]
    assert third["customer"]["name"] == "Jan Kowalski" and third["language"] == "pl"
    assert list(tmp_path.iterdir()) == []  # no registry, no blobs written
