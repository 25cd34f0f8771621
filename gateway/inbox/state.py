"""The inbox's per-application state and the helpers every handler uses: who is acting,
which language, rendering a page with its CSRF token and one-shot message."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from aiohttp_session import Session, get_session

from gateway.inbox.auth import LoginThrottle, new_csrf_token
from gateway.inbox.i18n import Translate, pick_language, translator
from gateway.inbox.live import LiveHub
from gateway.inbox.present import filesize
from gateway.inbox.service import Actor, InboxError
from gateway.inbox.settings import InboxSettings

ROOT = "/inbox"
#: Who is acting, set by the access middleware for the handlers.
ACTOR: Any = web.RequestKey("inbox_actor", Actor) if hasattr(web, "RequestKey") else "inbox.actor"


@dataclass(slots=True)
class InboxState:
    settings: InboxSettings
    throttle: LoginThrottle
    hub: LiveHub
    tz: ZoneInfo
    env: jinja2.Environment = field(default_factory=lambda: make_environment())


STATE = web.AppKey("inbox_state", InboxState)


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gateway.inbox", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["filesize"] = filesize
    return env


def state_of(request: web.Request) -> InboxState:
    return request.config_dict[STATE]


def actor_of(request: web.Request) -> Actor:
    actor = request.get(ACTOR)
    if not isinstance(actor, Actor):
        raise web.HTTPUnauthorized()
    return actor


def language_of(request: web.Request) -> str:
    actor = request.get(ACTOR)
    preferred = actor.language if isinstance(actor, Actor) else None
    return pick_language(request.headers.get("Accept-Language"), preferred, state_of(request).settings.default_language)


def translate(request: web.Request) -> Translate:
    return translator(language_of(request))


async def csrf_token(session: Session) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = new_csrf_token()
        session["csrf"] = token
    return token


async def flash(request: web.Request, kind: str, text: str) -> None:
    session = await get_session(request)
    session["flash"] = {"kind": kind, "text": text}


async def flash_error(request: web.Request, error: InboxError) -> None:
    await flash(request, "error", translate(request)(error.key, **error.values))


async def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    state = state_of(request)
    session = await get_session(request)
    lang = language_of(request)
    message = session.pop("flash", None)
    html = state.env.get_template(template).render(
        lang=lang, _=translator(lang), root=ROOT, operator=request.get(ACTOR), csrf=await csrf_token(session),
        flash=message, **context)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Content-Language": lang, "Vary": "Accept-Language, Cookie"})


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location=location)
