"""A small soak run (scripts/soak.py) on both backends (SQLite also with its writer process): mixed messages while the gateway is
SIGKILLed and restarted; every acknowledged message is registered and queued exactly once."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOORS = ("web", "smtp", "telegram")
MESSAGES, KILLS = 600, 2


def run_soak(tmp_path: Path, *extra: str) -> tuple[int, str, dict]:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--messages", str(MESSAGES), "--kills",
                           str(KILLS), "--clients", "6", "--max-seconds", "240", "--workdir", str(tmp_path / "soak"),
                           "--json", *extra], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc.returncode, proc.stdout + proc.stderr, result


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", "sqlite_writer_process", "redis"])
def test_soak_with_kills_keeps_every_promise(backend: str, tmp_path: Path, redis_url: str) -> None:
    """With SQLite's writer process, a killed gateway's writer goes on with the batch it holds
    and ends alone, while the gateway started again has a new one."""
    extra = (("--backend", "sqlite", "--sqlite-writer-process") if backend == "sqlite_writer_process"
             else ("--backend", backend) + (("--redis-url", redis_url) if backend == "redis" else ()))
    status, output, result = run_soak(tmp_path, *extra)
    assert status == 0, output
    assert result["kills"] == KILLS and not result["broken"] and not result["incomplete"]
    figures = result["figures"]
    total = figures["total"]
    assert total["sent"] == MESSAGES == sum(figures[d]["sent"] for d in DOORS)
    for door in (*DOORS, "total"):
        row = figures[door]
        assert row["sent"] > 0
        assert row["succeeded"] + row["no success"] == row["sent"]
        assert row["no success"] == row["  client gave up"] + row["  refused"] + row["  no success by deadline"]
        assert row["  refused"] == row["  no success by deadline"] == 0
        assert row["  of these registered"] <= row["no success"]
        # each success once, plus those whose answer was lost before the client gave up: once each
        assert row["registered"] == row["queued"] == row["succeeded"] + row["  of these registered"]
    assert sum(figures["events"].values()) == total["queued"]
    assert total["retry attempts"] >= total["retried messages"] > 0  # the kills made clients retry
    for promise in result["promises"]:
        assert promise["broken"] == 0, promise
    checked = {p["promise"]: p["checked"] for p in result["promises"]}
    assert checked["success answer -> registered and queued exactly once"] == total["succeeded"] > MESSAGES // 2
    assert checked["no success -> absent or registered once (with its event)"] == total["no success"]
    assert checked["answered registration number = registered one"] == figures["web"]["succeeded"] + figures["smtp"]["succeeded"]
    assert "promise" in output and "BROKEN" not in output
