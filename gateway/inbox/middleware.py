"""Every inbox response's security headers, and the gate every inbox request passes:
a logged-in operator's session or a machine's bearer token, and a CSRF token on every
state-changing request that rides on a session cookie."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp_session import Session, get_session

from gateway.http import json_error
from gateway.inbox.auth import csrf_matches, match_api_token
from gateway.inbox.service import Actor
from gateway.inbox.state import ACTOR, ROOT, InboxState, render, state_of, translate

log = logging.getLogger("complaint_gateway.inbox")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: applies to pages, errors, downloads and the event stream alike.
    A handler that set its own policy (the sandboxed original) keeps it."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"


def session_actor(session: Session, state: InboxState) -> Actor | None:
    username = session.get("operator")
    operator = state.settings.operators.get(username) if isinstance(username, str) else None
    login_at = session.get("login_at")
    if operator is None or not isinstance(login_at, (int, float)):
        return None  # removed from the configuration since, or never logged in
    if time.time() - login_at > state.settings.session_max_age:
        return None
    return Actor(operator.username, operator.name, operator.language, via="session")


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith(ROOT + "/static/"):
        return await handler(request)
    state = state_of(request)
    is_api = path.startswith(ROOT + "/api/")
    authorization = request.headers.get("Authorization")
    if is_api and authorization:
        token = match_api_token(state.settings.api_tokens, authorization)
        if token is None:
            log.warning("inbox api: bad bearer token", extra={"client": request.remote})
            return _unauthorized("invalid bearer token")
        request[ACTOR] = Actor(f"api:{token.name}", token.name, via="token")
        return await handler(request)

    session = await get_session(request)
    actor = session_actor(session, state)
    if actor is not None:
        request[ACTOR] = actor
    if request.method not in SAFE_METHODS and not await _csrf_ok(request, session, state):
        log.warning("inbox: CSRF token missing or wrong", extra={"path": path, "client": request.remote})
        if is_api:
            return json_error(403, "csrf token missing or wrong (send the X-CSRF-Token header)")
        _ = translate(request)
        template = "login.html" if path == ROOT + "/login" else "message.html"
        return await render(request, template, status=403, heading=_("csrf_failed"), text=_("csrf_failed"),
                            error=_("csrf_failed"), next=ROOT + "/", username="")
    if path == ROOT + "/login":
        return await handler(request)
    if actor is None:
        if is_api:
            return _unauthorized("log in or send a bearer token")
        target = request.path_qs if request.method == "GET" and path != ROOT + "/logout" else ROOT + "/"
        raise web.HTTPSeeOther(location=str(request.app.router["login"].url_for().with_query(next=target)))
    return await handler(request)


async def _csrf_ok(request: web.Request, session: Session, state: InboxState) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if request.content_length is not None and request.content_length > state.settings.max_api_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=state.settings.max_api_body_bytes,
                                                actual_size=request.content_length)
        form = await request.post()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    expected = session.get("csrf")
    return csrf_matches(expected if isinstance(expected, str) else None, given)


def _unauthorized(message: str) -> web.Response:
    response = json_error(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="complaint inbox"'
    return response
