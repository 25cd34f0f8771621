"""The Redis submit script alone: the Redis server's time per complaint, with no gateway,
no load generator and no HTTP beside it (Redis ``INFO commandstats``).

``python bench/submit_script.py [--complaints 20000] [--returning 200] [--script FILE] [--deadlines]``
submits web-form-like complaints in batches of 16, the first 2 000 as a warm-up: each from
a new customer (phone numbers spread over the range, as real ones are), or (``--returning
N``) from N customers in turn, whose recent complaints are then compared. ``--script``
measures another version of ``submit.lua`` that takes the same arguments; ``--deadlines``
gives each complaint the normaliser's two deadlines, as the web form's have, so that the
indexes of deadlines are written too. Prints the
script's time and that of the commands it ran. Figures only.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path

import redis
from common import REDIS_URL, phone

from gateway.ids import new_id
from gateway.registry import RegistrySettings
from gateway.registry.base import make_plan
from gateway.registry.redis import RedisRegistry
from normalizer.schema import Complaint, Customer, Identity

WARM_UP = 2000
BATCH = 16


#: The normaliser's deadlines for such a complaint (``--deadlines``): a first answer and a decision.
DEADLINES = {"acknowledge": "2026-03-10T17:00:00Z", "respond": "2026-03-17T09:00:00Z"}


def complaint(i: int, customers: int, deadlines: bool = False) -> Complaint:
    who = i % customers if customers else i
    return Complaint(id=new_id(), channel="web", channel_message_id=f"web:{new_id()}",
                     received_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                     customer=Customer(name=f"Bench {who}", identities=[Identity("phone", phone(who))]),
                     text=f"Complaint {i}: no internet since morning, router light {i % 7} is red",
                     deadlines=dict(DEADLINES) if deadlines else {})


async def measure(complaints: int, returning: int, script: Path | None, deadlines: bool = False) -> str:
    sync = redis.Redis.from_url(REDIS_URL)
    sync.flushdb()
    registry = RedisRegistry(RegistrySettings(), REDIS_URL, prefix="bench:")
    await registry.open()
    try:
        sha = sync.script_load(script.read_text()) if script else registry._submit_script.sha
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        args = [registry._submit_args(make_plan(complaint(i, returning, deadlines), registry.settings, registry.number_format), now)
                for i in range(complaints)]
        for start in range(0, complaints, BATCH):
            if start == WARM_UP:
                sync.config_resetstat()
            sync.evalsha(sha, 1, "bench:", *[value for pair in args[start:start + BATCH] for value in pair])
        stats = sync.info("commandstats")
    finally:
        await registry.close()
    n = complaints - WARM_UP
    inside = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_evalsha") / n
    calls = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_evalsha") / n
    who = (f"{returning} returning customers" if returning else "a new customer each") + (", with deadlines" if deadlines else "")
    return (f"submit script, {who}: {stats['cmdstat_evalsha']['usec'] / n:.1f} us of Redis time per complaint, "
            f"{inside:.1f} us of it in {calls:.1f} commands")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complaints", type=int, default=20_000)
    parser.add_argument("--returning", type=int, default=0, help="customers taking turns (0: a new one each time)")
    parser.add_argument("--script", type=Path, help="another version of gateway/registry/submit.lua")
    parser.add_argument("--deadlines", action="store_true", help="complaints with a first answer's and a decision's deadline")
    args = parser.parse_args()
    print(asyncio.run(measure(max(args.complaints, WARM_UP + BATCH), args.returning, args.script, args.deadlines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
