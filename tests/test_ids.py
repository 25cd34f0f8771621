"""Identifiers: format, order in time, uniqueness across threads and forked processes."""
from __future__ import annotations

import os
import re
import threading
import time

from gateway.ids import new_id


def test_an_id_is_32_hex_characters_beginning_with_the_milliseconds() -> None:
    before = int(time.time() * 1000)
    value = new_id()
    after = int(time.time() * 1000)
    assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert before <= int(value[:12], 16) <= after


def test_ids_drawn_by_many_threads_at_once_are_unique() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        for _ in range(20_000):
            into.append(new_id())

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({value for into in drawn for value in into}) == 80_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write_end, ",".join(new_id()[12:] for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parents = [new_id()[12:] for _ in range(50)]  # the random parts, drawn after the fork
    with os.fdopen(read_end) as pipe:
        childs = pipe.read().split(",")
    os.waitpid(pid, 0)
    assert len(childs) == 50
    assert not set(parents) & set(childs)
