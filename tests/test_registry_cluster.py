"""The registry contract on a three-master Redis Cluster on loopback, and what only a cluster
shows: partitions on every master, each customer's events in one partition and in order."""
from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import socket
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
import redis as redis_sync
import test_registry_contract as contract
from redis.cluster import RedisCluster as SyncRedisCluster
from test_registry_contract import *  # every contract test, run here against the cluster

from gateway.config import ConfigError, from_dict
from gateway.registry import RegistryError, RegistrySettings, build_registry
from gateway.registry.base import Event
from gateway.registry.redis_cluster import RedisClusterRegistry
from normalizer.schema import Complaint
from tests.conftest import base_config, registry_of

PREFIX = "{cgtest}:"


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three masters on free loopback ports, no replicas; the ports of the masters."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed")
    workdir = tmp_path_factory.mktemp("cluster")
    ports = _free_ports(6)
    masters, buses = ports[:3], ports[3:]
    procs = [subprocess.Popen(
        [server, "--cluster-enabled", "yes", "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
         "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(workdir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port, bus in zip(masters, buses)]
    try:
        for port in masters:
            _wait(partial(_answers, port), f"redis-server on port {port}")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in masters),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in masters:
            _wait(partial(_cluster_ok, port), f"cluster state on port {port}")
        yield masters
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _node(port: int) -> redis_sync.Redis:
    return redis_sync.Redis(host="127.0.0.1", port=port, socket_timeout=5)


def _cluster_ok(port: int) -> bool:
    return bool(_node(port).execute_command("CLUSTER INFO")["cluster_state"] == "ok")


def _answers(port: int) -> bool:
    try:
        return bool(_node(port).ping())
    except redis_sync.ConnectionError:
        return False


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(params=["redis_cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    """The contract tests imported above run here against the cluster only."""
    return str(request.param)


@pytest.fixture
def redis_url(redis_cluster: list[int]) -> str:
    """One node of the cluster (the client finds the others), every master flushed first."""
    for port in redis_cluster:
        _node(port).flushall()
    return f"redis://127.0.0.1:{redis_cluster[0]}"


@pytest.fixture
async def cluster_registry(redis_url: str) -> RedisClusterRegistry:
    reg = RedisClusterRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix=PREFIX)
    await reg.open()
    yield reg  # type: ignore[misc]
    await reg.close()


def _stored_keys(port: int, pattern: str) -> list[str]:
    """The keys a master itself stores (SCAN on one node sees only that node's keys)."""
    return [k.decode() for k in _node(port).scan_iter(match=pattern, count=1000)]


async def test_a_cluster_registry_written_before_its_indexes_gets_them_when_opened(redis_url: str) -> None:
    """The indexes of deadlines, states, channels, receipt times and messages' deadlines are
    built on a cluster too (its pipelines run the indexing scripts only once they are loaded on the slot's
    master)."""
    reg = RedisClusterRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix=PREFIX)
    await reg.open()
    try:
        numbers = contract.opened_numbers(await contract.registrations_with_deadlines(reg))
        now = time.time()
        due, claimed = await reg.registrations_due(now), await reg.search(state="claimed", limit=20)
        assert due["acknowledge"]["overdue"] == 1 and len(claimed.rows) == 2
        since = (contract.NOW + timedelta(minutes=3)).isoformat().replace("+00:00", "Z")
        dated = await reg.search(channel="web", since=since, limit=20)
        assert dated.rows and all(r["complaint"]["received_at"] >= since for r in dated.rows)
        assert len(dated.rows) < len((await reg.search(channel="web", limit=20)).rows)
        overdue = await reg.search(overdue=True, limit=20)
        assert overdue.rows
        await reg.r.delete(PREFIX + "due_indexed", PREFIX + "states_indexed", PREFIX + "due_names",
                           *(PREFIX + "due:" + name for name in due), *(PREFIX + "state:" + s for s in ("open", "claimed", "closed")),
                           PREFIX + "channels_indexed", PREFIX + "received_indexed", PREFIX + "channel:web", PREFIX + "received",
                           PREFIX + "due_messages_indexed", PREFIX + "due_messages")
        for number in numbers.values():
            await reg.r.hdel(PREFIX + "registration:" + number, "due")
        await reg.r.script_flush()
    finally:
        await reg.close()
    reg = RedisClusterRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix=PREFIX)
    await reg.open()
    try:
        assert await reg.registrations_due(now) == due
        assert (await reg.search(state="claimed", limit=20)).rows == claimed.rows
        assert (await reg.search(channel="web", since=since, limit=20)).rows == dated.rows
        assert (await reg.search(overdue=True, limit=20)).rows == overdue.rows
        assert await reg.r.zcard(PREFIX + "due_messages") > 0
    finally:
        await reg.close()


# -- where things live ----------------------------------------------------------------------
async def test_every_master_stores_partitions_holding_events_and_the_state_lives_on_one(
        cluster_registry: RedisClusterRegistry, redis_cluster: list[int]) -> None:
    for c in range(60):
        await cluster_registry.submit(contract.complaint(f"Жалоба клиента {c}: {uuid.uuid4().hex}",
                                                         ids=[("email", f"c{c}@example.com")]))
    await cluster_registry.create_group("crm")
    assert await cluster_registry.queue_length() == 60
    partitions = {port: _stored_keys(port, "cgtest:q*") for port in redis_cluster}
    assert sorted(k for keys in partitions.values() for k in keys) == sorted(cluster_registry.partition_keys)
    assert min(len(keys) for keys in partitions.values()) >= 5  # 16 partitions spread 5/5/6 over 3 masters
    for port, keys in partitions.items():
        assert sum(_node(port).xlen(k) for k in keys) > 0, f"master {port} holds no events"
    state = {port: _stored_keys(port, "{cgtest}:*") for port in redis_cluster}
    assert sorted(len(keys) > 0 for keys in state.values()) == [False, False, True]


def test_partition_keys_are_pinned_to_evenly_spaced_slots() -> None:
    from redis.crc import key_slot

    reg = RedisClusterRegistry(RegistrySettings(), "redis://127.0.0.1:1", prefix="{cg}:", partitions=16)
    slots = [key_slot(k.encode()) for k in reg.partition_keys]
    assert [s // 1024 for s in slots] == list(range(16))
    assert reg.partition_keys[3].startswith("cg:q3:{q3.") and reg.partition_keys[3].endswith("}:events")
    # a customer's partition depends on nothing but its id: the same in every process
    assert [reg.partition_of(f"customer-{i}") for i in range(6)] == [zlib.crc32(f"customer-{i}".encode()) % 16
                                                                     for i in range(6)]


# -- order and exactly-once across processes -------------------------------------------------
CUSTOMERS, MESSAGES, PROCESSES = 30, 10, 3


def _submitter(url: str, worker: int) -> None:
    """Message i of every customer is sent by process i % PROCESSES, in ascending i."""
    async def run() -> None:
        reg = RedisClusterRegistry(RegistrySettings(timezone="Europe/Moscow"), url, prefix=PREFIX)
        await reg.open()
        try:
            for i in range(worker, MESSAGES, PROCESSES):
                for c in range(CUSTOMERS):
                    await reg.submit(contract.complaint(f"#{i} от клиента {c}: {uuid.uuid4().hex} {uuid.uuid4().hex}",
                                                        ids=[("email", f"c{c}@example.com")], message_id=f"m-{c}-{i}"))
        finally:
            await reg.close()

    asyncio.run(run())


async def test_three_processes_each_customers_events_in_one_partition_in_order_exactly_once(
        cluster_registry: RedisClusterRegistry, redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_submitter, args=(redis_url, w)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    seen: list[Event] = []

    async def consume() -> None:  # reads and acknowledges while the processes submit
        while len(seen) < CUSTOMERS * MESSAGES or any(p.is_alive() for p in procs):
            events = await cluster_registry.read_events("crm", "reader", count=25, block_ms=200)
            seen.extend(events)
            if events:
                assert await cluster_registry.ack_events("crm", [e.id for e in events]) == len(events)

    reader = asyncio.create_task(consume())
    await asyncio.to_thread(lambda: [p.join(120) for p in procs])
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    await asyncio.wait_for(reader, 60)
    assert await cluster_registry.read_events("crm", "reader", count=1000) == []

    # exactly once: nothing crashed, so no event came twice and none is missing
    assert len(seen) == CUSTOMERS * MESSAGES
    assert len({e.id for e in seen}) == len({e.complaint_id for e in seen}) == CUSTOMERS * MESSAGES
    assert await cluster_registry.queue_length() == CUSTOMERS * MESSAGES

    # the partition streams themselves, in stream order
    client = SyncRedisCluster.from_url(redis_url, decode_responses=True)
    try:
        per_customer: dict[str, list[tuple[int, str, int]]] = {}
        kinds: dict[str, list[tuple[str, str, str, dict[str, object]]]] = {}  # shown when an assertion fails
        for n, key in enumerate(cluster_registry.partition_keys):
            for stream_id, fields in client.xrange(key):
                sent = Complaint.from_json(fields["complaint"])
                per_customer.setdefault(fields["customer_id"], []).append(
                    (n, fields["registration_number"], int(sent.text.split(" ", 1)[0][1:])))
                kinds.setdefault(fields["customer_id"], []).append((stream_id, fields["event"], sent.text, sent.meta))
    finally:
        client.close()
    assert len(per_customer) == CUSTOMERS
    for customer_id, rows in per_customer.items():
        assert {n for n, _, _ in rows} == {cluster_registry.partition_of(customer_id)}
        numbers = [number for _, number, _ in rows]
        assert numbers == sorted(numbers) and len(set(numbers)) == MESSAGES, kinds[customer_id]  # the order committed
        for w in range(PROCESSES):  # and each process's messages in the order it sent them
            sent = [i for _, _, i in rows if i % PROCESSES == w]
            assert sent == list(range(w, MESSAGES, PROCESSES))
    for e in seen:  # and the ids consumers acknowledge name that partition
        assert e.id.split(":", 1)[0] == f"q{cluster_registry.partition_of(e.customer_id or '')}"


# -- the relay ---------------------------------------------------------------------------------
async def test_relaying_the_same_outbox_entries_again_adds_nothing(cluster_registry: RedisClusterRegistry,
                                                                  redis_url: str) -> None:
    for c in range(8):
        await cluster_registry.submit(contract.complaint(f"Жалоба {c}", ids=[("email", f"r{c}@example.com")]))
    await cluster_registry.relay()
    lengths = [await cluster_registry.r.xlen(k) for k in cluster_registry.partition_keys]
    assert sum(lengths) == 8
    # a relay that copied the entries but died before moving the cursor: the next one copies again
    await cluster_registry.r.set(cluster_registry.cursor_key, "0-0")
    await cluster_registry.relay()
    assert [await cluster_registry.r.xlen(k) for k in cluster_registry.partition_keys] == lengths
    events = await cluster_registry.read_events("crm", "w", count=100)
    assert sorted(e.complaint_id for e in events) == sorted({e.complaint_id for e in events}) and len(events) == 8


async def test_the_background_relay_moves_events_without_any_reader(redis_url: str) -> None:
    reg = RedisClusterRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix=PREFIX)
    await reg.open()
    try:
        receipt = await reg.submit(contract.complaint("Никто не читает очередь"))
        key = reg.partition_keys[reg.partition_of(receipt.customer_id or "")]
        client = SyncRedisCluster.from_url(redis_url, decode_responses=True)
        try:
            [(outbox_id, _)] = client.xrange(reg.stream)
            await asyncio.to_thread(_wait, lambda: client.get(reg.cursor_key) == outbox_id, "the relay")
            [(entry_id, fields)] = client.xrange(key)
            assert fields["complaint_id"] == receipt.complaint_id
            assert entry_id == outbox_id  # the event keeps its outbox id
        finally:
            client.close()
    finally:
        await reg.close()


async def test_acknowledging_an_id_of_another_shape_is_a_clear_error(cluster_registry: RedisClusterRegistry) -> None:
    for bad in ("17", "q99:1-0", "x3:1-0", "q3:"):
        with pytest.raises(ValueError, match="not an event id"):
            await cluster_registry.ack_events("crm", [bad])


# -- configuration and the gateway ---------------------------------------------------------------
def test_a_prefix_without_hash_tag_is_refused_at_start_up(redis_url: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="hash tag"):
        build_registry({"backend": "redis_cluster", "redis_cluster": {"url": redis_url, "prefix": "cg:"}})
    with pytest.raises(RegistryError, match="url or startup_nodes"):
        build_registry({"backend": "redis_cluster", "redis_cluster": {}})
    with pytest.raises(ConfigError, match="partitions"):
        from_dict(base_config(tmp_path, registry={"backend": "redis_cluster",
                                                       "redis_cluster": {"url": redis_url, "partitions": 0}}))


def test_the_socket_timeout_is_a_setting_of_both_redis_backends(redis_url: str, tmp_path: Path) -> None:
    plain = build_registry({"backend": "redis", "redis": {"url": "redis://127.0.0.1:6379/15", "socket_timeout_seconds": 2.5}})
    cluster = build_registry({"backend": "redis_cluster", "redis_cluster": {"url": redis_url, "socket_timeout_seconds": 7}})
    default = build_registry({"backend": "redis", "redis": {}})
    assert (plain.socket_timeout, cluster.socket_timeout, default.socket_timeout) == (2.5, 7, 5.0)  # type: ignore[attr-defined]
    assert plain._client().connection_pool.connection_kwargs["socket_timeout"] == 2.5  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="socket_timeout_seconds"):
        from_dict(base_config(tmp_path, registry={"backend": "redis", "redis": {"socket_timeout_seconds": 0}}))


async def test_an_unreachable_cluster_is_a_registry_error_at_open() -> None:
    [port] = _free_ports(1)
    reg = RedisClusterRegistry(RegistrySettings(), f"redis://127.0.0.1:{port}", prefix=PREFIX)
    with pytest.raises(RegistryError, match=f"redis cluster at redis://127.0.0.1:{port}"):
        await reg.open()
    await reg.close()


async def test_gateway_on_the_cluster_registers_and_queues_a_web_complaint(
        tmp_path: Path, redis_url: str, redis_cluster: list[int], start_gateway) -> None:  # type: ignore[no-untyped-def]
    config = base_config(tmp_path, registry={"backend": "redis_cluster", "redis_cluster": {
        "startup_nodes": [f"127.0.0.1:{p}" for p in redis_cluster], "prefix": PREFIX, "partitions": 4}})
    client = await start_gateway(from_dict(config, base_dir=tmp_path))
    health = await (await client.get("/healthz")).json()
    assert (health["status"], health["backend"]) == ("ok", "redis_cluster")
    resp = await client.post("/web/complaints", json={"name": "Иван", "email": "ivan@example.com",
                                                      "text": "Третий день нет интернета."})
    assert resp.status == 201
    body = await resp.json()
    registry = registry_of(client)
    [event] = await registry.read_events("crm", "c1")
    assert (event.event, event.registration_number) == ("new", body["registration_number"])
    assert event.id.startswith(f"q{registry.partition_of(event.customer_id)}:")
    assert registry.partitions == 4
