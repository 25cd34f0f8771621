"""The app factory: ``create_app(config)`` wires registry, blob store, normaliser, metrics
and every enabled channel adapter into one aiohttp application."""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import plugins
from gateway.acknowledgements import AcknowledgementTexts, RetryPolicy
from gateway.adapters import Adapter, AdapterContext, PushAdapter
from gateway.blobs import SMALL_MAX_BYTES, BlobStore
from gateway.config import ConfigError, GatewayConfig, validate
from gateway.intake import DEFAULT_INLINE_ORIGINAL_MAX_BYTES, DEFAULT_MAX_BATCH, Intake
from gateway.metrics import CONTENT_TYPE, Metrics
from gateway.registry import Registry, build_registry
from normalizer.pipeline import Normalizer, NormalizerSettings

log = logging.getLogger("complaint_gateway.app")

CONFIG = web.AppKey("config", GatewayConfig)
REGISTRY = web.AppKey("registry", Registry)
INTAKE = web.AppKey("intake", Intake)
METRICS = web.AppKey("metrics", Metrics)
BLOBS = web.AppKey("blobs", BlobStore)
ADAPTERS = web.AppKey("adapters", dict)
TEXTS = web.AppKey("texts", AcknowledgementTexts)


def adapter_classes(config: GatewayConfig) -> dict[str, type[Adapter]]:
    """Load and validate the adapter of every enabled channel; mistakes raise ConfigError."""
    classes: dict[str, type[Adapter]] = {}
    for instance, section in config.enabled_channels().items():
        try:
            cls = plugins.load(section["adapter"])
        except plugins.UnknownAdapterError as exc:
            raise ConfigError(f"channels.{instance}.adapter: {exc}") from exc
        settings = {k: v for k, v in section.items() if k not in ("adapter", "enabled")}
        validate(settings, cls.settings_schema, prefix=f"channels.{instance}")
        cls.check_settings(settings, f"channels.{instance}")
        classes[instance] = cls
    return classes


def create_app(config: GatewayConfig, registry: Registry | None = None, *, primary: bool = True,
               worker: int = 0) -> web.Application:
    """The gateway as an aiohttp application. In the multi-process mode only the
    ``primary`` worker runs adapters that poll a door or listen on their own socket;
    ``worker`` is the process's number (0 to ``http.workers`` - 1)."""
    classes = adapter_classes(config)
    http = config.http
    app = web.Application(client_max_size=int(http["max_body_bytes"]))
    metrics = Metrics()
    registry = registry or build_registry(config.registry, config.section("normalizer"))
    blobs = BlobStore(config.blobs_path, fsync=bool(config.section("blobs").get("fsync", True)),
                      small_max_bytes=int(config.section("blobs").get("small_max_bytes", SMALL_MAX_BYTES)))
    normalizer = Normalizer(NormalizerSettings.from_config(config.section("normalizer")))
    texts = AcknowledgementTexts(config.section("acknowledgements"), normalizer.settings.default_language)
    acknowledgement_retry = RetryPolicy.from_config(config.section("acknowledgements"))
    intake_section = config.section("intake")
    intake = Intake(registry, blobs, normalizer, metrics, max_batch=int(intake_section.get("max_batch", DEFAULT_MAX_BATCH)),
                    inline_original_max_bytes=int(intake_section.get("inline_original_max_bytes", DEFAULT_INLINE_ORIGINAL_MAX_BYTES)))
    app[CONFIG], app[REGISTRY], app[METRICS], app[BLOBS], app[INTAKE], app[TEXTS] = (
        config, registry, metrics, blobs, intake, texts)

    adapters: dict[str, Adapter] = {}
    for instance, cls in classes.items():
        section = config.channels[instance]
        settings = {k: v for k, v in section.items() if k not in ("adapter", "enabled")}
        context = AdapterContext(instance=instance, settings=settings, sink=intake, state=registry,
                                 metrics=metrics, config=config, texts=texts, acknowledgement_retry=acknowledgement_retry,
                                 worker=worker, load_complaint=registry.get_message,
                                 record_acknowledgement_failure=functools.partial(_record_acknowledgement_failure, registry),
                                 take_tokens=registry.take_tokens,
                                 number_pattern=registry.number_format.pattern())
        adapter = cls(context)
        if not primary and not adapter.runs_in_every_worker():
            continue
        adapters[instance] = adapter
        if isinstance(adapter, PushAdapter):
            app.router.add_routes(adapter.routes())
    app[ADAPTERS] = adapters

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    app.cleanup_ctx.append(_lifecycle)
    # after the registry's life cycle: the inbox starts after it opens and stops before it closes
    from gateway.inbox import setup_inbox  # the inbox imports this module's keys

    setup_inbox(app, config)
    return app


async def _record_acknowledgement_failure(registry: Registry, registration_number: str, details: dict[str, Any]) -> None:
    await registry.apply_action(registration_number, "acknowledgement_failed", "gateway", details)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    registry = app[REGISTRY]
    await registry.open()
    started: list[Adapter] = []
    try:
        await asyncio.to_thread(app[BLOBS].open)
        for instance, adapter in app[ADAPTERS].items():
            await adapter.start()
            started.append(adapter)
            log.info("channel started", extra={"channel": instance, "adapter": adapter.name})
        for adapter in started:
            await adapter.resume_acknowledgements()
        yield
    finally:
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception as exc:  # one channel failing to stop must not keep the others running
                log.error("channel stop failed", extra={"channel": adapter.instance, "error": repr(exc)})
        await app[INTAKE].drain()
        app[BLOBS].close()
        await registry.close()


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    ok = await registry.healthy()
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "backend": registry.backend, "pid": os.getpid()}
    return web.json_response(body, status=200 if ok else 503)


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    registry = request.app[REGISTRY]
    try:
        metrics.queue_length.set(await registry.queue_length())
        metrics.dead_letters.set(len(await registry.list_dead_letters()))
        metrics.set_registrations_due(await registry.registrations_due(time.time()))
    except Exception as exc:  # metrics must answer even when the backend does not
        log.warning("metrics: backend unavailable", extra={"error": repr(exc)})
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})
