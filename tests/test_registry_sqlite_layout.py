"""The SQLite registry's file: a delivery is stored once, as its message row, and a file
written by an earlier version (receipts in a table of their own) is read the same."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.registry import RegistrySettings
from gateway.registry.sqlite import SqliteRegistry
from tests.test_registry_contract import complaint


def open_registry(path: Path) -> SqliteRegistry:
    return SqliteRegistry(RegistrySettings(timezone="Europe/Moscow"), path, synchronous="NORMAL")


async def test_a_second_message_row_for_one_delivery_is_refused_by_the_file_itself(tmp_path: Path) -> None:
    registry = open_registry(tmp_path / "registry.sqlite3")
    await registry.open()
    try:
        await registry.submit(complaint(channel="telegram", message_id="42:7"))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            registry.db.execute(
                "INSERT INTO messages(id, kind, channel, channel_message_id, received_epoch, simhash, digest, body)"
                " VALUES ('other', 'new', 'telegram', '42:7', 0, 0, '', '{}')")
    finally:
        await registry.close()


async def test_a_file_of_the_earlier_layout_recognises_its_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    registry = open_registry(path)
    await registry.open()
    first = await registry.submit(complaint(channel="vk", message_id="vk-1"))
    await registry.close()
    # the earlier layout: a receipts table beside the messages, no index of deliveries
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX messages_delivery;"
        "CREATE TABLE receipts (channel TEXT NOT NULL, message_id TEXT NOT NULL, receipt TEXT NOT NULL,"
        " PRIMARY KEY (channel, message_id));"
        f"INSERT INTO receipts VALUES ('vk', 'vk-1', '{{\"status\": \"new\", \"registration_number\":"
        f" \"{first.registration_number}\"}}');")
    db.close()

    registry = open_registry(path)
    await registry.open()
    try:
        again = await registry.submit(complaint(text="Другой текст", channel="vk", message_id="vk-1"))
        assert (again.status, again.registration_number, again.customer_id, again.complaint_id) == (
            "duplicate", first.registration_number, first.customer_id, first.complaint_id)
        later = await registry.submit(complaint(text="Счёт выставлен дважды", channel="vk", message_id="vk-2"))
        assert (later.status, later.registration_number) == ("new", "2026-000002")
        assert registry.db.execute("SELECT name FROM sqlite_master WHERE name='messages_delivery'").fetchone()
        assert registry.db.execute("SELECT COUNT(*) FROM receipts").fetchone() == (1,)  # left as it was
    finally:
        await registry.close()
