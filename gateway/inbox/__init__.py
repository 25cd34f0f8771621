"""The unified operator inbox: every door in one list, live; customers across doors;
answers through the customer's own door; a JSON API for machines.

``setup_inbox(app, config)`` mounts it at ``/inbox`` as a sub-application with its own
session, security and access middlewares, so no other route of the gateway is touched.
It does nothing unless config.yaml has an ``inbox:`` section that is not disabled.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from gateway.app import REGISTRY
from gateway.config import GatewayConfig
from gateway.inbox import api, views
from gateway.inbox.auth import LoginThrottle
from gateway.inbox.live import LiveHub
from gateway.inbox.middleware import gate, security_headers
from gateway.inbox.settings import enabled, load_settings
from gateway.inbox.state import ROOT, STATE, InboxState

log = logging.getLogger("complaint_gateway.inbox")

# aiohttp_session keeps each request's session under a string key, which aiohttp answers with
# a NotAppKeyWarning on the first login of every process; nothing here can change its key.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")


def setup_inbox(app: web.Application, config: GatewayConfig) -> None:
    """Validate ``inbox:`` (mistakes raise ConfigError now) and mount the inbox on ``app``."""
    if not enabled(config):
        return
    settings = load_settings(config)
    if not settings.operators and not settings.api_tokens:
        log.warning("inbox: no operators and no API tokens configured; nobody can use it")
    registry = app[REGISTRY]
    hub = LiveHub(registry, settings.consumer_group, batch=settings.batch, poll_interval=settings.poll_interval,
                  buffer=settings.client_buffer, max_subscribers=settings.max_clients)
    state = InboxState(settings=settings, hub=hub,
                       throttle=LoginThrottle(registry, settings.lockout_attempts, settings.lockout_window,
                                              settings.lockout_duration),
                       tz=ZoneInfo(config.section("normalizer").get("timezone", registry.settings.timezone)))
    inbox = web.Application()
    inbox[STATE] = state
    setup_session(inbox, EncryptedCookieStorage(
        settings.secret_key, cookie_name=settings.cookie_name, path=ROOT, max_age=settings.session_max_age,
        secure=settings.cookie_secure, httponly=True, samesite="Strict"))
    inbox.middlewares.append(gate)
    inbox.on_response_prepare.append(security_headers)
    inbox.router.add_routes(views.routes())
    inbox.router.add_routes(api.routes())
    app.add_subapp(ROOT, inbox)
    # after the registry is open (create_app's life cycle runs first), before it closes
    app.cleanup_ctx.append(_live_updates(hub))
    app.on_shutdown.append(_close_streams(hub))


def _live_updates(hub: LiveHub):  # type: ignore[no-untyped-def]
    async def run(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        log.info("inbox live updates started", extra={"group": hub.group})
        yield
        await hub.stop()

    return run


def _close_streams(hub: LiveHub):  # type: ignore[no-untyped-def]
    async def close(app: web.Application) -> None:
        await hub.stop()  # open event streams end, so shutdown does not wait for them

    return close


__all__ = ["setup_inbox"]
