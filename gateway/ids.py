"""Identifiers: 32 hex characters, time-ordered (48-bit milliseconds, then 80 random bits).

Ids need to be unique, not secret (every view of them is behind authentication), so the
random part comes from a per-process generator seeded once from the OS: reading the OS's
entropy for every message costs more than the rest of an id. A forked child seeds its own
generator, so it does not repeat its parent's sequence. The generator is thread-safe
(``random.Random`` draws its bits in C, in one step).
"""
from __future__ import annotations

import os
import random
import time

_random = random.Random(os.urandom(32))


def _reseed() -> None:
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{_random.getrandbits(80):020x}"
