"""SQLite's submits in a writer process (``registry.sqlite.writer_process``): what the writer
registers is what the gateway's own connection would (the whole registry contract runs on it
too, in tests/test_registry_contract.py); here, the writer's life beside the gateway: it
ends, it is killed, it gets the signals meant for the gateway, the gateway dies or closes."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.config import ConfigError, GatewayConfig, from_dict
from gateway.registry import RegistryError, RegistrySettings, build_registry
from gateway.registry.sqlite import SqliteRegistry
from gateway.testing.plugin import base_config
from scripts.soak import GatewayProcess, free_port
from tests.test_registry_contract import complaint


@pytest.fixture
async def registry(tmp_path: Path):
    reg = SqliteRegistry(RegistrySettings(timezone="Europe/Moscow"), tmp_path / "registry.sqlite3",
                         synchronous="NORMAL", writer_process=True)
    await reg.open()
    yield reg
    await reg.close()


def writer_pid(registry: SqliteRegistry) -> int:
    assert registry.writer is not None and registry.writer.process is not None
    return registry.writer.process.pid


def ended(pid: int) -> bool:
    """The process is gone, or a zombie no one has reaped yet: its main thread alone is left,
    and is one (it is one while the other threads still end, and then cannot be waited for)."""
    try:
        tasks = [task.name for task in Path(f"/proc/{pid}/task").iterdir()]
        return tasks == [str(pid)] and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def until_ended(pid: int, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not ended(pid):
            await asyncio.sleep(0.02)


def stored_texts(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return sorted(row[0] for row in db.execute("SELECT json_extract(body, '$.text') FROM messages"))
    finally:
        db.close()


async def test_a_writer_that_ended_between_batches_is_replaced_before_the_batch_is_sent(
        registry: SqliteRegistry, caplog: pytest.LogCaptureFixture) -> None:
    first = await registry.submit(complaint("Нет связи в квартире"))
    pid = writer_pid(registry)
    os.kill(pid, signal.SIGKILL)
    await until_ended(pid)
    with caplog.at_level(logging.ERROR, logger="gateway.registry.sqlite"):
        receipts = await registry.submit_many([complaint("Не работает телевидение", ids=[("email", "boris@example.com")])])
    assert [r.registration_number for r in receipts] == ["2026-000002"]  # type: ignore[union-attr]
    assert first.registration_number == "2026-000001"
    assert writer_pid(registry) != pid
    assert "sqlite writer process ended (exit code -9) between batches" in caplog.text


async def test_a_writer_killed_with_a_batch_in_it_fails_that_batch_and_writes_none_of_it(
        registry: SqliteRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "registry.sqlite3"
    await registry.submit(complaint("Не работает телевидение", ids=[("email", "b@example.com")]))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes: the writer's batch waits for the lock
    pid = writer_pid(registry)
    with caplog.at_level(logging.ERROR, logger="gateway.registry.sqlite"):
        batch = asyncio.ensure_future(registry.submit_many([complaint("Нет связи в квартире"),
                                                            complaint("Счёт выставлен дважды", ids=[("email", "a@example.com")])]))
        await asyncio.sleep(0.3)  # the batch waits for the lock in the writer
        assert not batch.done()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(RegistryError, match=r"the writer process ended \(exit code -9\)"):
            await batch
    assert "with a batch of 2 in it" in caplog.text
    other.execute("ROLLBACK")
    other.close()
    assert stored_texts(path) == ["Не работает телевидение"]
    again = await registry.submit(complaint("Нет интернета"))
    assert again.registration_number == "2026-000002"  # the killed batch drew no number
    assert writer_pid(registry) != pid
    assert stored_texts(path) == ["Не работает телевидение", "Нет интернета"]


async def test_the_writer_ignores_sigterm_and_sigint_and_ends_when_the_gateway_closes(tmp_path: Path) -> None:
    """A service manager's stop and a terminal's Ctrl-C reach the whole process group; the
    gateway drains its requests first, so its writer must outlive the signal."""
    registry = SqliteRegistry(RegistrySettings(), tmp_path / "registry.sqlite3", writer_process=True)
    await registry.open()
    await registry.submit(complaint("Нет связи в квартире"))
    pid = writer_pid(registry)
    process = registry.writer.process  # type: ignore[union-attr]
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    receipt = await registry.submit(complaint("Не работает телевидение"))
    assert receipt.registration_number == "2026-000002" and writer_pid(registry) == pid
    await registry.close()
    assert process is not None and process.returncode == 0
    assert registry.writer is not None and registry.writer.process is None


async def test_a_batch_whose_caller_is_cancelled_still_gets_its_answer_and_the_next_its_own(registry: SqliteRegistry) -> None:
    cancelled = asyncio.ensure_future(registry.submit_many([complaint("Нет связи в квартире")]))
    await asyncio.sleep(0)  # the frame is on its way
    cancelled.cancel()
    receipts = await registry.submit_many([complaint("Не работает телевидение", ids=[("email", "b@example.com")])])
    assert [r.registration_number for r in receipts] == ["2026-000002"]  # type: ignore[union-attr]
    assert cancelled.cancelled()
    first = await registry.list_messages()
    assert sorted(m.text for m in first) == ["Не работает телевидение", "Нет связи в квартире"]


async def test_the_writer_ends_when_its_gateway_dies(tmp_path: Path) -> None:
    script = (
        "import asyncio, os, sys\n"
        "from gateway.registry import RegistrySettings\n"
        "from gateway.registry.sqlite import SqliteRegistry\n"
        "from tests.test_registry_contract import complaint\n"
        "async def main():\n"
        f"    r = SqliteRegistry(RegistrySettings(), {str(tmp_path / 'registry.sqlite3')!r}, writer_process=True)\n"
        "    await r.open()\n"
        "    await r.submit(complaint())\n"
        "    print(r.writer.process.pid, flush=True)\n"
        "    os._exit(0)\n"  # as a SIGKILL would: nothing closed
        "asyncio.run(main())\n")
    gateway = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True,
                                      timeout=60, check=True, cwd=Path(__file__).resolve().parents[1])
    await until_ended(int(gateway.stdout.split()[0]))


async def test_a_writer_that_cannot_open_the_file_fails_the_batch_and_the_next_batch_tries_again(tmp_path: Path) -> None:
    registry = SqliteRegistry(RegistrySettings(), tmp_path / "registry.sqlite3", writer_process=True)
    await registry.open()
    assert registry.writer is not None and registry.writer.process is None  # started by the first submit
    (tmp_path / "a file").write_text("")
    registry.writer.args[0] = str(tmp_path / "a file" / "registry.sqlite3")
    try:
        with pytest.raises(RegistryError, match="the writer process did not start: .*a file"):
            await registry.submit_many([complaint()])
        assert registry.writer.process is None
        registry.writer.args[0] = str(tmp_path / "registry.sqlite3")
        assert (await registry.submit(complaint())).registration_number == "2026-000001"
    finally:
        await registry.close()


async def wal_bytes_after_batches(path: Path, checkpoint_pages: int) -> int:
    """The WAL file's size after six batches of sixteen new customers' complaints."""
    registry = SqliteRegistry(RegistrySettings(), path, writer_process=True, checkpoint_pages=checkpoint_pages)
    await registry.open()
    try:
        for batch in range(6):
            receipts = await registry.submit_many([complaint(f"Нет связи, обращение {batch}-{i}", ids=[("phone", f"+7916{batch}{i:06d}")])
                                                   for i in range(16)])
            assert all(not isinstance(r, Exception) for r in receipts)
        return (path.parent / (path.name + "-wal")).stat().st_size
    finally:
        await registry.close()


async def test_the_writer_copies_its_wal_into_the_file_as_often_as_the_setting_says(tmp_path: Path) -> None:
    """Every commit copies the WAL with a setting of one page, so the WAL starts again at each
    batch and stays one batch long; with a setting above what six batches write, it holds them all."""
    (tmp_path / "every").mkdir()
    (tmp_path / "seldom").mkdir()
    every_commit = await wal_bytes_after_batches(tmp_path / "every" / "registry.sqlite3", 1)
    seldom = await wal_bytes_after_batches(tmp_path / "seldom" / "registry.sqlite3", 100_000)
    assert seldom > 3 * every_commit, (every_commit, seldom)


def test_the_writer_checkpoint_setting_applies_only_with_a_writer(tmp_path: Path) -> None:
    def sqlite(**settings: object) -> SqliteRegistry:
        reg = build_registry(from_dict({"registry": {"backend": "sqlite", "sqlite": {
            "path": str(tmp_path / "r.sqlite3"), **settings}}}).registry)
        assert isinstance(reg, SqliteRegistry)
        return reg

    assert sqlite(writer_process=True).checkpoint_pages == 10_000  # the default with a writer
    assert sqlite(writer_process=True, writer_checkpoint_pages=2_500).checkpoint_pages == 2_500
    assert sqlite(writer_process=False, writer_checkpoint_pages=2_500).checkpoint_pages is None  # SQLite's own
    with pytest.raises(ConfigError, match="writer_checkpoint_pages"):
        from_dict({"registry": {"backend": "sqlite", "sqlite": {"writer_checkpoint_pages": 0}}})


def test_the_setting_starts_a_writer_and_takes_only_true_or_false(tmp_path: Path) -> None:
    config = from_dict({"registry": {"backend": "sqlite", "sqlite": {"path": str(tmp_path / "r.sqlite3"),
                                                                     "writer_process": True}}})
    reg = build_registry(config.registry)
    assert isinstance(reg, SqliteRegistry) and reg.writer is not None
    default = build_registry(from_dict({"registry": {"backend": "sqlite", "sqlite": {"path": str(tmp_path / "d.sqlite3")}}}).registry)
    assert isinstance(default, SqliteRegistry) and default.writer is None
    with pytest.raises(ConfigError, match="writer_process"):
        from_dict({"registry": {"backend": "sqlite", "sqlite": {"writer_process": "yes"}}})


async def test_a_gateway_with_a_writer_registers_a_web_form_and_stops_with_it_on_sigterm_to_both(tmp_path: Path) -> None:
    """The service manager's stop: SIGTERM to the gateway and to its writer at once. The
    gateway stops gracefully (exit 0) and its writer ends with it; what was answered is in
    the file."""
    http_port = free_port()
    raw = base_config(tmp_path)
    raw["registry"]["sqlite"]["writer_process"] = True
    raw["http"] = {"host": "127.0.0.1", "port": http_port}
    raw["logging"] = {"level": "WARNING"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    gateway = GatewayProcess(tmp_path / "config.yaml", http_port, tmp_path / "gateway.log")
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{http_port}/web/complaints",
                                    json={"phone": "+79161234567", "text": "Нет интернета третий день"}) as resp:
                answer = await resp.json()
        assert resp.status == 201 and answer["registration_number"] == "2026-000001"
        assert gateway.proc is not None
        writers = [int(pid) for pid in Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children").read_text().split()]
        assert len(writers) == 1 and "gateway.registry.sqlite_writer" in Path(f"/proc/{writers[0]}/cmdline").read_text()
        os.kill(writers[0], signal.SIGTERM)
        assert await gateway.stop() == 0
        await until_ended(writers[0])
    finally:
        if not gateway.exited():
            gateway.kill()
    assert stored_texts(tmp_path / "registry.sqlite3") == ["Нет интернета третий день"]


def test_several_workers_with_writers_are_warned_of_and_one_worker_or_redis_are_not(tmp_path: Path) -> None:
    def config(backend: str) -> GatewayConfig:
        return from_dict({"registry": {"backend": backend, "sqlite": {"path": str(tmp_path / "r.sqlite3"),
                                                                      "writer_process": True}}})

    [warning] = config("sqlite").warnings(2)
    assert warning.startswith("registry.sqlite.writer_process is on with 2 workers: ")
    assert "turn it off or run one worker" in warning
    assert config("sqlite").warnings(1) == []
    assert config("redis").warnings(2) == []
    assert from_dict({"registry": {"backend": "sqlite"}}).warnings(4) == []


def test_check_config_prints_the_warning_and_still_passes(tmp_path: Path) -> None:
    raw = base_config(tmp_path)
    raw["registry"]["sqlite"]["writer_process"] = True
    raw["http"] = {"workers": 3}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(tmp_path / "config.yaml"), "check-config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ": OK (" in out.stdout
    assert "warning: registry.sqlite.writer_process is on with 3 workers" in out.stderr


async def test_a_gateway_run_with_workers_and_writers_logs_the_warning_once_at_start(tmp_path: Path) -> None:
    http_port = free_port()
    raw = base_config(tmp_path)
    raw["registry"]["sqlite"]["writer_process"] = True
    raw["http"] = {"host": "127.0.0.1", "port": http_port, "workers": 2}
    raw["logging"] = {"level": "WARNING"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    gateway = GatewayProcess(tmp_path / "config.yaml", http_port, tmp_path / "gateway.log")
    await gateway.start()
    try:
        assert await gateway.stop() == 0
    finally:
        if not gateway.exited():
            gateway.kill()
    warnings = [line for line in (tmp_path / "gateway.log").read_text().splitlines() if "writer_process is on" in line]
    assert len(warnings) == 1
    assert '"level": "WARNING"' in warnings[0] and "configuration: registry.sqlite.writer_process is on with 2 workers" in warnings[0]
