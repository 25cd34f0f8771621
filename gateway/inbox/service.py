"""What an operator can do, once, for both the pages and the JSON API: read a complaint
with its registration, act on it, answer through its door, merge customers, replay dead
letters. Failures are ``InboxError`` with an HTTP status and a message key."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.adapters import Adapter, TemporaryFailure
from gateway.app import INTAKE, REGISTRY
from gateway.inbound import Receipt
from gateway.registry import Registry
from normalizer.schema import Complaint

log = logging.getLogger("complaint_gateway.inbox")

#: Actions an operator records without sending anything (a reply goes through ``reply``).
PLAIN_ACTIONS = ("claim", "close", "reopen", "note")


class InboxError(Exception):
    """A refusal with an HTTP status, a stable code for machines and a message key for people."""

    def __init__(self, status: int, code: str, key: str, **values: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.key = key
        self.values = values


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an operator (session) or a machine (bearer token, ``api:<name>``)."""

    username: str
    name: str
    language: str | None = None
    via: str = "session"


@dataclass(slots=True)
class ComplaintDetail:
    """A message with what the inbox shows around it."""

    complaint: Complaint
    kind: str
    state: dict[str, Any] | None
    registration: dict[str, Any] | None
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        state = self.state or {}
        return {
            "complaint": self.complaint.to_dict(),
            "kind": self.kind,
            "state": state.get("state"),
            "assigned_to": state.get("assigned_to"),
            "registration": None if self.registration is None else {
                "registration_number": self.registration["registration_number"],
                "customer_id": self.registration["customer_id"],
                "created_at": self.registration["created_at"],
                "messages": [{"id": m["complaint"]["id"], "kind": m["kind"], "channel": m["complaint"]["channel"],
                              "received_at": m["complaint"]["received_at"]} for m in self.registration["messages"]],
            },
            "actions": self.actions,
        }


async def load_complaint(registry: Registry, complaint_id: str) -> ComplaintDetail:
    complaint = await registry.get_message(complaint_id)
    if complaint is None:
        raise InboxError(404, "not_found", "not_found")
    number = complaint.registration_number
    state = await registry.registration_state(number) if number else None
    registration = await registry.get_registration(number) if number else None
    actions = await registry.actions(number) if number else []
    kind = "automatic" if complaint.auto_submitted else (state or {}).get("kinds", {}).get(complaint.id, "new")
    return ComplaintDetail(complaint, kind, state, registration, actions)


async def perform(registry: Registry, detail: ComplaintDetail, action: str, actor: Actor,
                  text: str | None = None, max_chars: int = 5000) -> dict[str, Any]:
    """Record ``claim``, ``close``, ``reopen`` or ``note`` on the message's registration."""
    if action not in PLAIN_ACTIONS:
        raise InboxError(400, "unknown_action", "not_found")
    number = _number(detail)
    details: dict[str, Any] = {"complaint_id": detail.complaint.id}
    if action == "note":
        details["text"] = _text(text, max_chars)
    try:
        record = await registry.apply_action(number, action, actor.username, details)
    except KeyError as exc:
        raise InboxError(404, "not_found", "not_found") from exc
    log.info("operator action", extra={"action": action, "operator": actor.username, "registration_number": number})
    return record


def can_reply(adapter: Adapter | None) -> bool:
    """Whether the door's adapter implements ``send_reply``."""
    return adapter is not None and type(adapter).send_reply is not Adapter.send_reply


async def reply(registry: Registry, adapters: dict[str, Adapter], detail: ComplaintDetail, actor: Actor,
                text: str | None, max_chars: int) -> dict[str, Any]:
    """Answer the customer through the door the message came by; recorded only once sent."""
    complaint = detail.complaint
    number = _number(detail)
    body = _text(text, max_chars)
    adapter = adapters.get(complaint.channel)
    reply_to = f"{complaint.reply_to.kind}: {complaint.reply_to.value}" if complaint.reply_to else "—"
    if adapter is None:
        raise InboxError(409, "channel_not_configured", "reply_unconfigured", channel=complaint.channel)
    if not can_reply(adapter):
        raise InboxError(409, "door_cannot_reply", "reply_refused", channel=complaint.channel, reply_to=reply_to)
    try:
        await adapter.send_reply(complaint, body)
    except NotImplementedError as exc:
        raise InboxError(409, "door_cannot_reply", "reply_refused", channel=complaint.channel, reply_to=reply_to) from exc
    except (TemporaryFailure, Exception) as exc:  # the door failed: tell the operator, record nothing
        log.warning("reply failed", extra={"channel": complaint.channel, "registration_number": number,
                                           "error": type(exc).__name__})
        raise InboxError(502, "door_failed", "reply_failed", channel=complaint.channel, error=type(exc).__name__) from exc
    record = await registry.apply_action(number, "reply", actor.username, {
        "complaint_id": complaint.id, "channel": complaint.channel, "text": body,
        "reply_to": complaint.reply_to.kind if complaint.reply_to else None})
    log.info("reply sent", extra={"channel": complaint.channel, "operator": actor.username, "registration_number": number})
    return record


async def merge(registry: Registry, source: str, target: str, actor: Actor, suggestion_id: str | None = None) -> str:
    source, target = source.strip(), target.strip()
    if source == target:
        raise InboxError(409, "same_customer", "same_customer")
    for cid in (source, target):
        if not cid or await registry.get_customer(cid) is None:
            raise InboxError(404, "unknown_customer", "unknown_customer", id=cid)
    try:
        merge_id = await registry.merge_customers(source, target, actor.username, suggestion_id)
    except KeyError as exc:
        raise InboxError(404, "unknown_customer", "unknown_customer", id=str(exc.args[0] if exc.args else "")) from exc
    except ValueError as exc:
        raise InboxError(409, "cannot_merge", "cannot_merge", reason=str(exc)) from exc
    log.info("customers merged", extra={"operator": actor.username, "merge_id": merge_id})
    return merge_id


async def unmerge(registry: Registry, merge_id: str, actor: Actor) -> None:
    try:
        await registry.unmerge(merge_id, actor.username)
    except KeyError as exc:
        raise InboxError(404, "not_found", "not_found") from exc
    except ValueError as exc:
        raise InboxError(409, "cannot_unmerge", "cannot_merge", reason=str(exc)) from exc
    log.info("merge undone", extra={"operator": actor.username, "merge_id": merge_id})


async def find_suggestion(registry: Registry, suggestion_id: str) -> dict[str, Any]:
    for suggestion in await registry.merge_suggestions():
        if suggestion["id"] == suggestion_id:
            return suggestion
    raise InboxError(404, "not_found", "not_found")


async def accept_suggestion(registry: Registry, suggestion_id: str, actor: Actor) -> str:
    """Merge the second customer of the suggestion into the first (the one known earlier)."""
    suggestion = await find_suggestion(registry, suggestion_id)
    return await merge(registry, suggestion["customer_b"], suggestion["customer_a"], actor, suggestion_id)


async def reject_suggestion(registry: Registry, suggestion_id: str, actor: Actor) -> None:
    try:
        await registry.reject_suggestion(suggestion_id, actor.username)
    except KeyError as exc:
        raise InboxError(404, "not_found", "not_found") from exc
    log.info("merge suggestion rejected", extra={"operator": actor.username, "suggestion_id": suggestion_id})


async def replay(request: web.Request, dead_letter_id: str, actor: Actor) -> Receipt:
    for entry in await request.config_dict[REGISTRY].list_dead_letters():
        if entry["id"] == dead_letter_id:
            break
    else:
        raise InboxError(404, "not_found", "not_found")
    submitted = await request.config_dict[INTAKE].replay(entry)
    log.info("dead letter replayed", extra={"operator": actor.username, "dead_letter_id": dead_letter_id,
                                            "status": submitted.receipt.status})
    if submitted.receipt.status == "dead_letter":
        raise InboxError(422, "still_failing", "replay_failed", reason=entry["reason"])
    return submitted.receipt


def _number(detail: ComplaintDetail) -> str:
    number = detail.complaint.registration_number
    if not number:
        raise InboxError(409, "no_registration", "not_found")
    return number


def _text(text: str | None, max_chars: int) -> str:
    body = (text or "").strip()
    if not body:
        raise InboxError(422, "text_required", "text_required")
    if len(body) > max_chars:
        raise InboxError(422, "text_too_long", "text_too_long", max=max_chars)
    return body
