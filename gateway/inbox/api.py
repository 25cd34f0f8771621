"""The inbox's JSON API (``/inbox/api/``), described by ``openapi.yaml`` beside this module.

The same access as the pages: an operator's session (state-changing calls then need the
``X-CSRF-Token`` header, from ``GET /inbox/api/me``) or a machine's bearer token.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from gateway.app import ADAPTERS, REGISTRY
from gateway.http import BodyTooLarge, json_error, read_body
from gateway.inbox import service
from gateway.inbox.filters import FilterError, Filters
from gateway.inbox.i18n import translator
from gateway.inbox.service import InboxError
from gateway.inbox.state import ROOT, actor_of, csrf_token, state_of
from gateway.registry.base import iso

MAX_LIMIT = 500


def _error(error: InboxError) -> web.Response:
    return json_error(error.status, error.code, message=translator("en")(error.key, **error.values))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text=json.dumps({"error": "send application/json"}), content_type="application/json")
    try:
        body = await read_body(request, state_of(request).settings.max_api_body_bytes)
    except BodyTooLarge:
        raise web.HTTPRequestEntityTooLarge(max_size=state_of(request).settings.max_api_body_bytes,
                                            actual_size=request.content_length or 0,
                                            text=json.dumps({"error": "request body too large"}),
                                            content_type="application/json") from None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"not valid JSON: {exc}"}), content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "a JSON object is expected"}), content_type="application/json")
    return data


def _string(data: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise web.HTTPUnprocessableEntity(text=json.dumps({"error": "invalid", "fields": {name: "a string is required"}}),
                                          content_type="application/json")
    return value


async def me(request: web.Request) -> web.Response:
    actor = actor_of(request)
    body: dict[str, Any] = {"username": actor.username, "name": actor.name, "via": actor.via}
    if actor.via == "session":
        body["csrf_token"] = await csrf_token(await get_session(request))
    return web.json_response(body)


async def list_complaints(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        filters = Filters.parse(request.query, str(state.tz))
        limit = int(request.query.get("limit", state.settings.page_size))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except FilterError as exc:
        return json_error(400, "invalid filters", fields=exc.problems)
    except ValueError:
        return json_error(400, "invalid filters", fields={"limit": f"an integer from 1 to {MAX_LIMIT}"})
    found = await request.config_dict[REGISTRY].search(**filters.search_kwargs(), limit=limit,
                                                       scan_limit=state.settings.search_scan_limit)
    return web.json_response({"items": found.rows, "next_before": found.next_before, "scan_limited": found.scan_limited})


async def get_complaint(request: web.Request) -> web.Response:
    try:
        detail = await service.load_complaint(request.config_dict[REGISTRY], request.match_info["complaint_id"])
    except InboxError as error:
        return _error(error)
    return web.json_response(detail.to_dict())


async def complaint_action(request: web.Request) -> web.Response:
    data = await _json_body(request)
    action = _string(data, "action") or ""
    text = _string(data, "text", required=False)
    registry = request.config_dict[REGISTRY]
    try:
        detail = await service.load_complaint(registry, request.match_info["complaint_id"])
        if action not in service.PLAIN_ACTIONS:
            return json_error(422, "invalid", fields={"action": " | ".join(service.PLAIN_ACTIONS)})
        record = await service.perform(registry, detail, action, actor_of(request), text,
                                       state_of(request).settings.max_note_chars)
    except InboxError as error:
        return _error(error)
    return web.json_response(record, status=201)


async def reply(request: web.Request) -> web.Response:
    data = await _json_body(request)
    text = _string(data, "text")
    registry = request.config_dict[REGISTRY]
    try:
        detail = await service.load_complaint(registry, request.match_info["complaint_id"])
        record = await service.reply(registry, request.config_dict[ADAPTERS], detail, actor_of(request), text,
                                     state_of(request).settings.max_reply_chars)
    except InboxError as error:
        return _error(error)
    return web.json_response(record, status=201)


async def get_customer(request: web.Request) -> web.Response:
    registry = request.config_dict[REGISTRY]
    customer = await registry.get_customer(request.match_info["customer_id"])
    if customer is None:
        return json_error(404, "not_found", message="no such customer")
    return web.json_response({**customer, "merges": await registry.merges(customer["customer_id"])})


async def merge_customer(request: web.Request) -> web.Response:
    data = await _json_body(request)
    source = _string(data, "source") or ""
    try:
        merge_id = await service.merge(request.config_dict[REGISTRY], source, request.match_info["customer_id"],
                                       actor_of(request))
    except InboxError as error:
        return _error(error)
    return web.json_response({"merge_id": merge_id, "source": source, "target": request.match_info["customer_id"]},
                             status=201)


async def undo_merge(request: web.Request) -> web.Response:
    try:
        await service.unmerge(request.config_dict[REGISTRY], request.match_info["merge_id"], actor_of(request))
    except InboxError as error:
        return _error(error)
    return web.json_response({"merge_id": request.match_info["merge_id"], "undone": True})


async def deadlines(request: web.Request) -> web.Response:
    """The registrations not closed, per the deadline that matters for each now, how many
    of them have passed it and how many pass it soon (``Registry.registrations_due``)."""
    now, registry = datetime.now(UTC), request.config_dict[REGISTRY]
    due = await registry.registrations_due(now.timestamp())
    return web.json_response({"at": iso(now), "due_soon_minutes": registry.settings.due_soon_seconds / 60, "deadlines": due})


async def list_suggestions(request: web.Request) -> web.Response:
    return web.json_response({"items": await request.config_dict[REGISTRY].merge_suggestions()})


async def accept_suggestion(request: web.Request) -> web.Response:
    try:
        merge_id = await service.accept_suggestion(request.config_dict[REGISTRY], request.match_info["suggestion_id"],
                                                   actor_of(request))
    except InboxError as error:
        return _error(error)
    return web.json_response({"merge_id": merge_id, "suggestion_id": request.match_info["suggestion_id"]}, status=201)


async def reject_suggestion(request: web.Request) -> web.Response:
    try:
        await service.reject_suggestion(request.config_dict[REGISTRY], request.match_info["suggestion_id"],
                                        actor_of(request))
    except InboxError as error:
        return _error(error)
    return web.json_response({"suggestion_id": request.match_info["suggestion_id"], "rejected": True})


async def list_dead_letters(request: web.Request) -> web.Response:
    entries = await request.config_dict[REGISTRY].list_dead_letters(include_resolved=request.query.get("all") == "true")
    return web.json_response({"items": entries})


async def replay_dead_letter(request: web.Request) -> web.Response:
    try:
        receipt = await service.replay(request, request.match_info["dead_letter_id"], actor_of(request))
    except InboxError as error:
        return _error(error)
    return web.json_response(receipt.to_dict())


async def audit(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", 100))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        return json_error(400, "invalid", fields={"limit": f"an integer from 1 to {MAX_LIMIT}"})
    return web.json_response({"items": await request.config_dict[REGISTRY].audit_log(limit)})


def spec_text() -> str:
    return resources.files("gateway.inbox").joinpath("openapi.yaml").read_text("utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=spec_text(), content_type="application/yaml")


PREFIX = "/api"


def routes() -> list[web.RouteDef]:
    p = PREFIX
    return [
        web.get(p + "/me", me),
        web.get(p + "/complaints", list_complaints),
        web.get(p + "/complaints/{complaint_id}", get_complaint),
        web.post(p + "/complaints/{complaint_id}/actions", complaint_action),
        web.post(p + "/complaints/{complaint_id}/reply", reply),
        web.get(p + "/customers/{customer_id}", get_customer),
        web.post(p + "/customers/{customer_id}/merge", merge_customer),
        web.post(p + "/merges/{merge_id}/undo", undo_merge),
        web.get(p + "/deadlines", deadlines),
        web.get(p + "/merge-suggestions", list_suggestions),
        web.post(p + "/merge-suggestions/{suggestion_id}/accept", accept_suggestion),
        web.post(p + "/merge-suggestions/{suggestion_id}/reject", reject_suggestion),
        web.get(p + "/dead-letters", list_dead_letters),
        web.post(p + "/dead-letters/{dead_letter_id}/replay", replay_dead_letter),
        web.get(p + "/audit", audit),
        web.get(p + "/openapi.yaml", openapi),
    ]


__all__ = ["ROOT", "routes", "spec_text"]
