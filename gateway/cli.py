"""The ``complaint-gateway`` command."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway import __version__, plugins
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.registry.base import RegistryError

log = logging.getLogger("gateway.cli")

#: A purge keeps a blob stored again within this many minutes before it began (``retention.blob_grace_minutes``).
DEFAULT_BLOB_GRACE_MINUTES = 60


def _config_path(given: str | None) -> str | None:
    if given:
        return given
    env = os.environ.get("COMPLAINT_GATEWAY_CONFIG")
    if env:
        return env
    return "config.yaml" if Path("config.yaml").exists() else None


def _load(args: argparse.Namespace) -> GatewayConfig:
    return load_config(_config_path(args.config))


def _with_registry(args: argparse.Namespace, work: Callable[[Any, GatewayConfig], Awaitable[int]]) -> int:
    from gateway.registry import build_registry

    config = _load(args)

    async def main() -> int:
        registry = build_registry(config.registry, config.section("normalizer"))
        await registry.open()
        try:
            return await work(registry, config)
        finally:
            await registry.close()

    return asyncio.run(main())


# -- commands -------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    http = config.http
    host = args.host or http["host"]
    port = args.port if args.port is not None else int(http["port"])
    workers = args.workers if args.workers is not None else int(http.get("workers", 1))
    _setup_logging(config)
    for warning in config.warnings(workers):
        log.warning("configuration: %s", warning)
    if workers <= 1:
        _serve(config, host, port, primary=True, reuse_port=False)
        return 0
    return _serve_workers(_config_path(args.config), host, port, workers)


def _serve(config: GatewayConfig, host: str, port: int, *, primary: bool, reuse_port: bool, worker: int = 0) -> None:
    from aiohttp import web

    from gateway.app import create_app

    web.run_app(create_app(config, primary=primary, worker=worker), host=host, port=port, reuse_port=reuse_port or None,
                shutdown_timeout=float(config.http["shutdown_timeout_seconds"]), access_log=None,
                print=lambda msg: print(msg, file=sys.stderr))


def _setup_logging(config: GatewayConfig) -> None:
    from gateway.logs import setup_logging

    logging_section = config.section("logging")
    setup_logging(logging_section.get("level", "INFO"), logging_section.get("format", "json"))


def _worker(config_path: str | None, host: str, port: int, index: int) -> None:
    config = load_config(config_path)
    _setup_logging(config)  # a spawned process: its parent's logging is not inherited
    _serve(config, host, port, primary=index == 0, reuse_port=True, worker=index)


def _serve_workers(config_path: str | None, host: str, port: int, workers: int) -> int:
    """The multi-process mode: ``workers`` processes share the port (SO_REUSEPORT) and the
    registry backend; SIGTERM and SIGINT are passed on, and the parent waits for all."""
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config_path, host, port, i), name=f"worker-{i}") for i in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum: int, frame: Any) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)

    stopping: list[float] = []

    def forward_once(signum: int, frame: Any) -> None:
        stopping.append(time.monotonic())
        forward(signum, frame)

    signal.signal(signal.SIGTERM, forward_once)
    signal.signal(signal.SIGINT, forward_once)
    grace = float(load_config(config_path).http["shutdown_timeout_seconds"]) + 10
    while any(proc.is_alive() for proc in procs):
        for proc in procs:
            proc.join(0.2)
        if stopping and time.monotonic() - stopping[0] > grace:  # a worker that does not stop is killed
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
    return max((proc.exitcode or 0) for proc in procs)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.acknowledgements import AcknowledgementTexts, RetryPolicy
    from gateway.app import adapter_classes
    from gateway.inbox.settings import enabled, load_settings
    from gateway.registry import RegistrySettings
    from normalizer.pipeline import NormalizerSettings

    config = _load(args)
    classes = adapter_classes(config)
    RegistrySettings.from_config(config.registry, config.section("normalizer"))
    NormalizerSettings.from_config(config.section("normalizer"))  # urgency rules compiled, deadlines read
    AcknowledgementTexts(config.section("acknowledgements"))  # templates parsed as `run` parses them
    RetryPolicy.from_config(config.section("acknowledgements"))
    if enabled(config):
        load_settings(config)
    for warning in config.warnings(int(config.http["workers"])):
        print(f"{config.source}: warning: {warning}", file=sys.stderr)
    print(f"{config.source}: OK ({len(classes)} channel(s): {', '.join(f'{k} [{c.name}]' for k, c in classes.items())})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from normalizer.schema import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_queue_read(args: argparse.Namespace) -> int:
    async def work(registry: Any, config: GatewayConfig) -> int:
        while True:
            events = await registry.read_events(args.group, args.consumer, args.count,
                                                block_ms=args.block_ms if args.follow else 0)
            for event in events:
                print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)
            if not args.follow:
                return 0

    try:
        return _with_registry(args, work)
    except KeyboardInterrupt:
        return 0


def cmd_queue_ack(args: argparse.Namespace) -> int:
    async def work(registry: Any, config: GatewayConfig) -> int:
        done = await registry.ack_events(args.group, args.ids)
        print(json.dumps({"acknowledged": done}))
        return 0 if done == len(args.ids) else 1

    return _with_registry(args, work)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    async def work(registry: Any, config: GatewayConfig) -> int:
        for entry in await registry.list_dead_letters(include_resolved=args.all):
            record = entry["record"]
            print(json.dumps({"id": entry["id"], "channel": entry["channel"], "reason": entry["reason"],
                              "created_at": entry["created_at"], "resolved_at": entry["resolved_at"],
                              "message_id": record.get("message_id")}, ensure_ascii=False))
        return 0

    return _with_registry(args, work)


def cmd_replay(args: argparse.Namespace) -> int:
    from gateway.blobs import BlobStore
    from gateway.intake import Intake
    from gateway.metrics import Metrics
    from normalizer.pipeline import Normalizer, NormalizerSettings

    async def work(registry: Any, config: GatewayConfig) -> int:
        intake = Intake(registry, BlobStore(config.blobs_path), Normalizer(
            NormalizerSettings.from_config(config.section("normalizer"))), Metrics())
        failed = 0
        for entry in await registry.list_dead_letters():
            if args.ids and entry["id"] not in args.ids:
                continue
            submitted = await intake.replay(entry)
            receipt = submitted.receipt
            failed += receipt.status == "dead_letter"
            print(json.dumps({**receipt.to_dict(), "dead_letter_id": entry["id"]}, ensure_ascii=False))
        return 1 if failed else 0

    return _with_registry(args, work)


def cmd_purge(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from gateway.blobs import BlobStore
    from gateway.registry.base import iso, utcnow

    async def work(registry: Any, config: GatewayConfig) -> int:
        retention = config.section("retention")
        days = args.older_than if args.older_than is not None else retention.get("days")
        if not days:
            print("purge: give --older-than DAYS or set retention.days", file=sys.stderr)
            return 2
        # a blob stored again lately is kept: a message being registered while the purge
        # looked for the blobs still named may name it
        put_before = time.time() - 60 * float(retention.get("blob_grace_minutes", DEFAULT_BLOB_GRACE_MINUTES))
        blobs = BlobStore(config.blobs_path)
        result = await registry.purge(iso(utcnow() - timedelta(days=float(days))), blobs.purge_deferred())
        unused = result.pop("blobs")
        deleted = {sha for sha in unused if blobs.delete(sha, put_before)}
        kept = [sha for sha in unused if sha not in deleted and blobs.exists(sha)]  # stored again lately
        blobs.set_purge_deferred(kept)
        result.update(blobs_deleted=len(deleted), blobs_deferred=len(kept))
        print(json.dumps(result))
        return 0

    return _with_registry(args, work)


def cmd_channels(args: argparse.Namespace) -> int:
    rows = []
    for name, ep in sorted(plugins.installed().items()):
        dist, dist_version = plugins.distribution_of(ep)
        try:
            cls = ep.load()
            rows.append({"adapter": name, "version": cls.version, "distribution": f"{dist} {dist_version}",
                         "capabilities": sorted(cls.capabilities), "description": cls.description})
        except Exception as exc:  # a broken plugin is listed, not fatal
            rows.append({"adapter": name, "distribution": f"{dist} {dist_version}", "error": repr(exc)})
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for row in rows:
            caps = ",".join(row.get("capabilities", []))
            print(f"{row['adapter']:<16} {row.get('version', '?'):<6} {row['distribution']:<32} {caps or row.get('error', '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="complaint-gateway", description="Omnichannel complaint intake gateway.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", "-c", help="config file (default: $COMPLAINT_GATEWAY_CONFIG or ./config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the HTTP server and every enabled channel")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--workers", type=int, help="worker processes sharing the port (default http.workers, 1)")
    run.set_defaults(func=cmd_run)
    sub.add_parser("check-config", help="validate config.yaml and every channel's settings").set_defaults(func=cmd_check_config)
    sub.add_parser("schema", help="print the Complaint JSON Schema").set_defaults(func=cmd_schema)

    queue = sub.add_parser("queue", help="read and acknowledge registry queue events").add_subparsers(dest="queue_command", required=True)
    read = queue.add_parser("read", help="print events as JSON lines")
    read.add_argument("--group", required=True)
    read.add_argument("--consumer", default=f"cli-{os.getpid()}")
    read.add_argument("--count", type=int, default=10)
    read.add_argument("--follow", action="store_true", help="keep reading as events arrive")
    read.add_argument("--block-ms", type=int, default=5000)
    read.set_defaults(func=cmd_queue_read)
    ack = queue.add_parser("ack", help="acknowledge events by id")
    ack.add_argument("--group", required=True)
    ack.add_argument("ids", nargs="+")
    ack.set_defaults(func=cmd_queue_ack)

    dead = sub.add_parser("dead-letters", help="list messages the normaliser could not handle")
    dead.add_argument("--all", action="store_true", help="include replayed ones")
    dead.set_defaults(func=cmd_dead_letters)
    replay = sub.add_parser("replay", help="process dead letters again")
    replay.add_argument("ids", nargs="*", help="only these dead letters (default: all open ones)")
    replay.set_defaults(func=cmd_replay)
    purge = sub.add_parser("purge", help="remove personal data and raw originals older than the retention period")
    purge.add_argument("--older-than", type=float, metavar="DAYS", help="default: retention.days")
    purge.set_defaults(func=cmd_purge)
    channels = sub.add_parser("channels", help="list installed channel adapters")
    channels.add_argument("--json", action="store_true")
    channels.set_defaults(func=cmd_channels)
    from gateway.inbox.commands import add_inbox_commands

    add_inbox_commands(sub)

    for name, ep in sorted(plugins.installed().items()):
        try:
            ep.load().add_cli_commands(sub)
        except Exception as exc:  # a broken plugin must not break the whole command
            print(f"warning: adapter {name!r} could not add its commands: {exc!r}", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except RegistryError as exc:
        print(f"registry error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
