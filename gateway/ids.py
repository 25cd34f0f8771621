"""Identifiers: 32 hex characters, time-ordered (48-bit milliseconds, then 80 random bits).

Ids need to be unique, not secret (every view of them is behind authentication), so the
random part comes from a per-process generator seeded once from the OS: reading the OS's
entropy for every message costs more than the rest of an id.
"""
from __future__ import annotations

import os
import random
import threading
import time

_random = random.Random(os.urandom(32))
_lock = threading.Lock()
_pid = os.getpid()


def new_id() -> str:
    global _pid
    if os.getpid() != _pid:  # a forked child must not repeat its parent's sequence
        _random.seed(os.urandom(32))
        _pid = os.getpid()
    with _lock:
        bits = _random.getrandbits(80)
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{bits:020x}"
