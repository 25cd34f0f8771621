"""Registry backends behind one contract; ``open_registry(config)`` picks one."""
from __future__ import annotations

from typing import Any

from gateway.registry.base import Event, Registry, RegistryError, RegistrySettings

__all__ = ["Event", "Registry", "RegistryError", "RegistrySettings", "build_registry"]


def build_registry(registry: dict[str, Any], normalizer: dict[str, Any] | None = None) -> Registry:
    """The backend named by ``registry.backend`` (``sqlite``, ``redis`` or ``redis_cluster``), not yet open."""
    settings = RegistrySettings.from_config(registry, normalizer)
    backend = registry.get("backend", "sqlite")
    if backend == "sqlite":
        from gateway.registry.sqlite import DEFAULT_CACHE_MB, DEFAULT_WRITE_LOCK_POLL_MS, SqliteRegistry

        sqlite = registry.get("sqlite") or {}
        writer_process = bool(sqlite.get("writer_process", False))
        return SqliteRegistry(settings, sqlite.get("path", "var/registry.sqlite3"), sqlite.get("synchronous", "FULL"),
                              int(sqlite.get("cache_mb", DEFAULT_CACHE_MB)),
                              int(sqlite.get("write_lock_poll_ms", DEFAULT_WRITE_LOCK_POLL_MS)), writer_process,
                              sqlite.get("writer_checkpoint_pages") if writer_process else None)  # the registry's default when not set
    if backend == "redis":
        from gateway.registry.redis import RedisRegistry

        return RedisRegistry.from_config(settings, registry.get("redis") or {})
    if backend == "redis_cluster":
        from gateway.registry.redis_cluster import RedisClusterRegistry

        return RedisClusterRegistry.from_config(settings, registry.get("redis_cluster") or {})
    raise RegistryError(f"registry.backend: unknown backend {backend!r} (sqlite, redis or redis_cluster)")
