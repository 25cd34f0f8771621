"""The inbox's pages: log in and out, the live list, a complaint, a customer, merge
suggestions, dead letters and the audit log; every form posts and redirects back."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp_session import get_session, new_session

from gateway.app import ADAPTERS, BLOBS, CONFIG, METRICS, REGISTRY, TEXTS
from gateway.http import client_address
from gateway.inbound import Receipt
from gateway.inbox import service
from gateway.inbox.assets import CSS, JS
from gateway.inbox.auth import check_password, new_csrf_token
from gateway.inbox.filters import FilterError, Filters
from gateway.inbox.i18n import LANGUAGES, translator
from gateway.inbox.live import sse
from gateway.inbox.original import ORIGINAL_CSP, download, view_of
from gateway.inbox.present import deadlines_view, local_time, message_view, row_view
from gateway.inbox.service import InboxError
from gateway.inbox.state import ACTOR, ROOT, actor_of, flash, flash_error, language_of, render, see_other, state_of, translate
from gateway.registry.base import STATES, Registry, RegistryError, SearchResult
from normalizer.deadlines import DEFAULT_POLICIES
from normalizer.schema import URGENCIES

log = logging.getLogger("complaint_gateway.inbox")

#: Which acknowledgement text a door gets, by adapter name (see gateway.acknowledgements.DOOR_KIND).
DOOR_OF_ADAPTER = {"smtp": "email", "imap": "email", "twilio_sms": "sms", "twilio_voice": "ivr", "ivr_webhook": "ivr",
                   "vk": "chat", "ok": "chat", "telegram": "chat", "web_form": "web", "partner_api": "web"}


# -- log in / out ---------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    if request.get(ACTOR) is not None:
        raise see_other(ROOT + "/")
    return await render(request, "login.html", title=translate(request)("login_title"),
                        next=_safe_next(request.query.get("next")), username="", error=None)


async def login(request: web.Request) -> web.Response:
    state = state_of(request)
    _ = translate(request)
    form = await request.post()
    username = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    keys = (f"addr:{client_address(request)}", f"user:{username.casefold()}")
    try:
        locked = await state.throttle.attempt(keys)  # counted before the check: see LoginThrottle
    except RegistryError as exc:  # nothing counts the attempts: no password is checked
        log.error("inbox login refused: the registry cannot count attempts", extra={"error": str(exc)})
        _login_counted(request, "unavailable")
        return await render(request, "login.html", status=503, title=_("login_title"), next=target, username=username,
                            error=_("login_unavailable"))
    if locked > 0:
        log.warning("inbox login refused: locked out", extra={"operator": username, "client": request.remote})
        _login_counted(request, "locked")
        return await render(request, "login.html", status=429, title=_("login_title"), next=target, username=username,
                            error=_("locked_out", minutes=max(1, round(locked / 60))))
    operator = state.settings.operators.get(username)
    if not await check_password(operator, password) or operator is None:
        log.warning("inbox login failed", extra={"operator": username, "client": request.remote})
        _login_counted(request, "failed")
        return await render(request, "login.html", status=401, title=_("login_title"), next=target, username=username,
                            error=_("login_failed"))
    try:
        await state.throttle.success(keys)
    except RegistryError as exc:  # the login stands; its attempts expire with the window
        log.warning("inbox login: attempts not cleared", extra={"operator": username, "error": str(exc)})
    session = await new_session(request)  # a fresh session: nothing from before the login survives
    session["operator"] = operator.username
    session["login_at"] = time.time()
    session["csrf"] = new_csrf_token()
    log.info("inbox login", extra={"operator": operator.username})
    _login_counted(request, "ok")
    raise see_other(target)


def _login_counted(request: web.Request, result: str) -> None:
    metrics = request.config_dict[METRICS]
    metrics.child(metrics.inbox_logins, result).inc()


async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    operator = session.get("operator")
    session.invalidate()
    log.info("inbox logout", extra={"operator": operator})
    raise see_other(ROOT + "/login")


def _safe_next(value: str | None) -> str:
    """Only a path inside the inbox: never another site (open redirect)."""
    if value and value.startswith(ROOT + "/") and not value.startswith("//") and "\\" not in value and "\n" not in value:
        return value
    return ROOT + "/"


# -- the list -------------------------------------------------------------------------
#: The default deadlines in their documented order (first answer, decision, technical, legal).
_DEADLINE_ORDER = tuple(DEFAULT_POLICIES)


def _deadline_order(item: tuple[str, dict[str, int]]) -> tuple[int, str]:
    """The default deadlines first, in their order, then any other by name."""
    name = item[0]
    return (_DEADLINE_ORDER.index(name) if name in _DEADLINE_ORDER else len(_DEADLINE_ORDER), name)


async def _deadline_counts(registry: Registry, now: datetime) -> dict[str, Any]:
    """What ``deadline_counts.html`` shows: the open registrations per deadline, overdue and due soon."""
    due = await registry.registrations_due(now.timestamp())
    return {"due": sorted(due.items(), key=_deadline_order), "due_soon_minutes": f"{registry.settings.due_soon_seconds / 60:g}"}


async def deadline_counts(request: web.Request) -> web.Response:
    """The list's counts per deadline alone, as the list shows them, for its script to
    refresh them: a row becomes overdue with the clock, and with every registration or
    action. The session's flash message is left for the next page."""
    lang = language_of(request)
    html = state_of(request).env.get_template("deadline_counts.html").render(
        _=translator(lang), root=ROOT, **await _deadline_counts(request.config_dict[REGISTRY], datetime.now(UTC)))
    return web.Response(text=html, content_type="text/html", headers={"Content-Language": lang, "Vary": "Accept-Language, Cookie"})


async def complaint_list(request: web.Request) -> web.Response:
    state = state_of(request)
    registry = request.config_dict[REGISTRY]
    _ = translate(request)
    errors: list[str] = []
    try:
        filters = Filters.parse(request.query, str(state.tz))
    except FilterError as exc:
        errors = [f"{name}: {problem}" for name, problem in exc.problems.items()]
        filters = Filters()
    page, scan_limit = state.settings.page_size, state.settings.search_scan_limit
    everything = await registry.search(**filters.search_kwargs(with_channel=False, with_before=False),
                                       limit=state.settings.count_scan_limit, scan_limit=scan_limit)
    counts: dict[str, int] = {}
    for row in everything.rows:
        channel = row["complaint"]["channel"]
        counts[channel] = counts.get(channel, 0) + 1
    if filters.channel or filters.before:
        found = await registry.search(**filters.search_kwargs(), limit=page, scan_limit=scan_limit)
    elif len(everything.rows) > page:
        found = SearchResult(everything.rows[:page], everything.rows[page - 1]["complaint"]["id"], scan_limited=False)
    else:
        found = everything
    now = datetime.now(UTC)
    rows = [row_view(r["complaint"], r["kind"], r["state"], r["assigned_to"], state.tz, _, now, r.get("undelivered", False))
            for r in found.rows]
    channels = sorted(set(request.config_dict[CONFIG].channels) | set(counts))
    return await render(request, "list.html", title=_("list_title"), section="list", rows=rows, f=filters,
                        errors=errors, counts=sorted(counts.items()), **await _deadline_counts(registry, now),
                        channels=channels, urgencies=URGENCIES,
                        states=STATES, languages=LANGUAGES, next_before=found.next_before,
                        scan_limited=found.scan_limited, scan_limit=scan_limit)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events for the list: new rows that match the page's filters, state changes."""
    state = state_of(request)
    hub = state.hub
    try:
        filters = Filters.parse(request.query, str(state.tz))
    except FilterError:
        filters = Filters()
    subscriber = hub.subscribe()
    if subscriber is None:
        raise web.HTTPServiceUnavailable(text="too many live connections", headers={"Retry-After": "30"})
    lang = language_of(request)
    _ = translator(lang)
    env = state.env
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await hub.ready.wait()
        await response.write(b"retry: 3000\n\n" + sse("hello", {"group": hub.group}))
        if request.headers.get("Last-Event-ID"):
            await response.write(sse("resync", {}))  # a reconnect may have missed updates
        while True:
            try:
                update = await asyncio.wait_for(subscriber.queue.get(), state.settings.heartbeat)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if update is None or subscriber.overflowed:
                break
            if update.kind == "message" and update.complaint is not None:
                if not filters.matches(update.complaint, update.message_kind, update.state):
                    continue
                row = row_view(update.complaint, update.message_kind, update.state, update.assigned_to, state.tz, _,
                               undelivered=update.undelivered)
                html = env.get_template("row.html").render(r=row, _=_, root=ROOT)
                await response.write(sse("row", {"id": row["id"], "number": row["number"], "channel": row["channel"],
                                                 "html": html}, update.event_id))
            elif update.kind == "state" and update.registration_number:
                text = _("state_" + (update.state or "open")) + (f" · {update.assigned_to}" if update.assigned_to else "")
                await response.write(sse("state", {"registration_number": update.registration_number,
                                                   "state": update.state, "text": text}, update.event_id))
            elif update.kind == "undelivered" and update.registration_number:
                if filters.undelivered:  # the list of such complaints gains one: read it again
                    await response.write(sse("resync", {}, update.event_id))
                else:
                    await response.write(sse("undelivered", {"registration_number": update.registration_number,
                                                         "text": _("tag_undelivered")}, update.event_id))
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        hub.unsubscribe(subscriber)
    return response


# -- one complaint --------------------------------------------------------------------
def _action_text(details: dict[str, Any]) -> str | None:
    """What an action shows under its name: a reply's or note's text; for an acknowledgement
    the gateway gave up on, the door and why."""
    if "error" in details:
        return f"{details.get('channel')}: {details['error']}"
    return details.get("text")


async def complaint_page(request: web.Request) -> web.Response:
    state = state_of(request)
    _ = translate(request)
    detail = await _detail(request)
    c = detail.complaint
    data = c.to_dict()
    st = detail.state or {}
    row = row_view(data, detail.kind, st.get("state"), st.get("assigned_to"), state.tz, _)
    registration = None
    if detail.registration:
        registration = {"messages": [message_view(m["kind"], m["complaint"], state.tz)
                                     for m in detail.registration["messages"]]}
    actions = [{**a, "at_local": local_time(a.get("at"), state.tz), "text": _action_text(a.get("details") or {})}
               for a in detail.actions]
    adapter = request.config_dict[ADAPTERS].get(c.channel)
    reply_to = f"{c.reply_to.kind}: {c.reply_to.value}" if c.reply_to else "—"
    refusal = (_("reply_unconfigured", channel=c.channel) if adapter is None
               else _("reply_refused", channel=c.channel, reply_to=reply_to))
    return await render(request, "complaint.html", title=f"{_('complaint')} {c.registration_number or ''}",
                        section="list", c=data, r=row, registration=registration, actions=actions,
                        deadlines=deadlines_view(data, datetime.now(UTC), _) if st.get("state") != "closed" else [],
                        original=_original_info(request, data), ack=_acknowledgement(request, detail),
                        can_reply=service.can_reply(adapter), reply_refusal=refusal,
                        max_reply=state.settings.max_reply_chars, max_note=state.settings.max_note_chars)


async def _detail(request: web.Request) -> service.ComplaintDetail:
    try:
        return await service.load_complaint(request.config_dict[REGISTRY], request.match_info["complaint_id"])
    except InboxError:
        raise web.HTTPNotFound(text=translate(request)("not_found")) from None


def _original_info(request: web.Request, complaint: dict[str, Any]) -> dict[str, Any] | None:
    """Where the original is (a small one's text in the complaint, else its blob), its size
    and type; None when there is none or its blob is gone (purged)."""
    raw = (complaint.get("meta") or {}).get("raw") or {}
    content_type = raw.get("content_type") or "application/octet-stream"
    if isinstance(raw.get("text"), str):
        data = raw["text"].encode("utf-8")
        return {"data": data, "size": len(data), "content_type": content_type}
    sha = raw.get("sha256")
    blobs = request.config_dict[BLOBS]
    try:
        size = blobs.size(sha) if sha else None
    except (ValueError, OSError):
        return None
    if size is None:
        return None
    return {"sha256": sha, "size": size, "content_type": content_type}


async def _original_bytes(request: web.Request, info: dict[str, Any]) -> bytes:
    data = info.get("data")
    return data if isinstance(data, bytes) else await request.config_dict[BLOBS].get(info["sha256"])


def _acknowledgement(request: web.Request, detail: service.ComplaintDetail) -> dict[str, Any] | None:
    """The acknowledgement as recorded by the door, else as the gateway words it for this door."""
    c = detail.complaint
    recorded = c.meta.get("acknowledgement")
    if isinstance(recorded, str) and recorded:
        return {"text": recorded, "recorded": True}
    if c.auto_submitted or not c.registration_number or detail.kind not in ("new", "follow_up", "repeat"):
        return None
    adapter = request.config_dict[ADAPTERS].get(c.channel)
    door = getattr(adapter, "door", None) or DOOR_OF_ADAPTER.get(getattr(adapter, "name", ""), "short")
    receipt = Receipt(detail.kind, c.registration_number, c.customer.customer_id, c.id)  # type: ignore[arg-type]
    return {"text": request.config_dict[TEXTS].render(c, receipt, door=door), "recorded": False}


async def original(request: web.Request) -> web.Response:
    """The original as its own sandboxed document: sanitised, no script, no remote content."""
    detail = await _detail(request)
    info = _original_info(request, detail.complaint.to_dict())
    if info is None:
        raise web.HTTPNotFound(text=translate(request)("no_original"))
    raw = await _original_bytes(request, info)
    view = await asyncio.to_thread(view_of, raw, info["content_type"], state_of(request).settings.max_original_bytes)
    nonce = secrets.token_urlsafe(16)
    lang = language_of(request)
    html = state_of(request).env.get_template("original.html").render(view=view, nonce=nonce, lang=lang, _=translator(lang))
    return web.Response(text=html, content_type="text/html", headers={
        "Content-Security-Policy": ORIGINAL_CSP.format(nonce=nonce), "X-Frame-Options": "SAMEORIGIN"})


async def raw_download(request: web.Request) -> web.Response:
    detail = await _detail(request)
    info = _original_info(request, detail.complaint.to_dict())
    if info is None:
        raise web.HTTPNotFound(text=translate(request)("no_original"))
    extension = {"message/rfc822": ".eml", "application/json": ".json", "text/html": ".html"}.get(
        info["content_type"].split(";")[0].strip().lower(), ".bin")
    name = f"{detail.complaint.registration_number or detail.complaint.id}-original{extension}"
    return download(await _original_bytes(request, info), info["content_type"], name)


async def attachment(request: web.Request) -> web.Response:
    detail = await _detail(request)
    try:
        item = detail.complaint.attachments[int(request.match_info["index"])]
    except (ValueError, IndexError):
        raise web.HTTPNotFound(text=translate(request)("not_found")) from None
    blobs = request.config_dict[BLOBS]
    try:
        data = await blobs.get(item.sha256)
    except (ValueError, OSError):
        raise web.HTTPNotFound(text=translate(request)("not_found")) from None
    return download(data, item.content_type, item.filename)


async def act(request: web.Request) -> web.Response:
    """claim, close, reopen, note, reply: recorded with operator and time; back to the complaint."""
    action = request.match_info["action"]
    detail = await _detail(request)
    state = state_of(request)
    registry = request.config_dict[REGISTRY]
    form = await request.post()
    text = str(form.get("text") or "")
    _ = translate(request)
    back = f"{ROOT}/complaints/{detail.complaint.id}"
    try:
        if action == "reply":
            await service.reply(registry, request.config_dict[ADAPTERS], detail, actor_of(request), text,
                                state.settings.max_reply_chars)
            await flash(request, "ok", _("reply_sent", channel=detail.complaint.channel))
        else:
            await service.perform(registry, detail, action, actor_of(request), text, state.settings.max_note_chars)
            await flash(request, "ok", _({"claim": "claimed_ok", "close": "closed_ok", "reopen": "reopened_ok",
                                          "note": "note_added"}[action]))
    except InboxError as error:
        await flash_error(request, error)
    raise see_other(back)


# -- customers ------------------------------------------------------------------------
async def customer_page(request: web.Request) -> web.Response:
    state = state_of(request)
    registry = request.config_dict[REGISTRY]
    _ = translate(request)
    customer = await registry.get_customer(request.match_info["customer_id"])
    if customer is None:
        raise web.HTTPNotFound(text=_("not_found"))
    registrations = []
    for number in customer.get("registrations") or []:
        reg = await registry.get_registration(number)
        st = await registry.registration_state(number) or {}
        if reg is None:
            continue
        registrations.append({"number": number, "state": st.get("state"), "assigned_to": st.get("assigned_to"),
                              "messages": [message_view(m["kind"], m["complaint"], state.tz) for m in reg["messages"]]})
    cid = customer["customer_id"]
    related = {cid, *(customer.get("merged_from") or [])}
    suggestions = [s for s in await _suggestions(request) if {s["customer_a"], s["customer_b"]} & related]
    merges = [{**m, "at_local": local_time(m.get("created_at"), state.tz)} for m in await registry.merges(cid)]
    return await render(request, "customer.html", title=f"{_('customer')} {customer.get('name') or cid}",
                        customer=customer, registrations=registrations, suggestions=suggestions, merges=merges)


async def _suggestions(request: web.Request) -> list[dict[str, Any]]:
    registry = request.config_dict[REGISTRY]
    out = []
    names: dict[str, str | None] = {}
    for s in await registry.merge_suggestions():
        for cid in (s["customer_a"], s["customer_b"]):
            if cid not in names:
                names[cid] = ((await registry.get_customer(cid)) or {}).get("name")
        identities = s.get("identities")
        text = ", ".join(identities) if isinstance(identities, list) else str(identities or "")
        out.append({**s, "name_a": names[s["customer_a"]], "name_b": names[s["customer_b"]], "identities_text": text})
    return out


async def merge_into(request: web.Request) -> web.Response:
    target = request.match_info["customer_id"]
    form = await request.post()
    try:
        await service.merge(request.config_dict[REGISTRY], str(form.get("source") or ""), target, actor_of(request))
        await flash(request, "ok", translate(request)("merged_ok"))
    except InboxError as error:
        await flash_error(request, error)
    raise see_other(f"{ROOT}/customers/{target}")


async def undo_merge(request: web.Request) -> web.Response:
    merge_id = request.match_info["merge_id"]
    registry = request.config_dict[REGISTRY]
    back = ROOT + "/"
    try:
        await service.unmerge(registry, merge_id, actor_of(request))
        await flash(request, "ok", translate(request)("unmerged_ok"))
    except InboxError as error:
        await flash_error(request, error)
    for record in await registry.audit_log(200):
        if record.get("merge_id") == merge_id and record.get("target"):
            back = f"{ROOT}/customers/{record['target']}"
            break
    raise see_other(back)


async def suggestions_page(request: web.Request) -> web.Response:
    _ = translate(request)
    return await render(request, "suggestions.html", title=_("nav_suggestions"), section="suggestions",
                        suggestions=await _suggestions(request))


async def decide_suggestion(request: web.Request) -> web.Response:
    registry = request.config_dict[REGISTRY]
    suggestion_id = request.match_info["suggestion_id"]
    _ = translate(request)
    try:
        if request.match_info["decision"] == "accept":
            suggestion = await service.find_suggestion(registry, suggestion_id)
            await service.accept_suggestion(registry, suggestion_id, actor_of(request))
            await flash(request, "ok", _("merged_ok"))
            raise see_other(f"{ROOT}/customers/{suggestion['customer_a']}")
        await service.reject_suggestion(registry, suggestion_id, actor_of(request))
        await flash(request, "ok", _("suggestion_rejected"))
    except InboxError as error:
        await flash_error(request, error)
    raise see_other(ROOT + "/suggestions")


# -- dead letters and audit -----------------------------------------------------------
async def dead_letters_page(request: web.Request) -> web.Response:
    state = state_of(request)
    _ = translate(request)
    dead = []
    for entry in await request.config_dict[REGISTRY].list_dead_letters():
        record = entry.get("record") or {}
        dead.append({"id": entry["id"], "channel": entry["channel"], "reason": entry["reason"],
                     "created_local": local_time(entry.get("created_at"), state.tz),
                     "excerpt": (record.get("subject") or "") + " " + " ".join(str(record.get("text") or "").split())[:120]})
    return await render(request, "dead_letters.html", title=_("nav_dead"), section="dead", dead=dead)


async def replay_dead_letter(request: web.Request) -> web.Response:
    _ = translate(request)
    try:
        receipt = await service.replay(request, request.match_info["dead_letter_id"], actor_of(request))
        await flash(request, "ok", _("replayed_ok", number=receipt.registration_number or "—"))
    except InboxError as error:
        await flash_error(request, error)
    raise see_other(ROOT + "/dead-letters")


async def audit_page(request: web.Request) -> web.Response:
    state = state_of(request)
    _ = translate(request)
    records = []
    for record in await request.config_dict[REGISTRY].audit_log(200):
        target = record.get("registration_number") or " → ".join(
            x for x in (record.get("source"), record.get("target")) if x) or record.get("suggestion_id") or ""
        records.append({"at_local": local_time(record.get("at"), state.tz), "operator": record.get("operator"),
                        "action": record.get("action"), "target": target})
    return await render(request, "audit.html", title=_("nav_audit"), section="audit", records=records)


# -- static ---------------------------------------------------------------------------
async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=CSS, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


async def script(request: web.Request) -> web.Response:
    return web.Response(text=JS, content_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/login", login_form, name="login"),
        web.post("/login", login),
        web.post("/logout", logout),
        web.get("/", complaint_list, name="list"),
        web.get("/events", events),
        web.get("/deadline-counts", deadline_counts),
        web.get("/complaints/{complaint_id}", complaint_page),
        web.get("/complaints/{complaint_id}/original", original),
        web.get("/complaints/{complaint_id}/raw", raw_download),
        web.get(r"/complaints/{complaint_id}/attachments/{index:\d+}", attachment),
        web.post("/complaints/{complaint_id}/{action:claim|close|reopen|note|reply}", act),
        web.get("/customers/{customer_id}", customer_page),
        web.post("/customers/{customer_id}/merge", merge_into),
        web.post("/merges/{merge_id}/undo", undo_merge),
        web.get("/suggestions", suggestions_page),
        web.post("/suggestions/{suggestion_id}/{decision:accept|reject}", decide_suggestion),
        web.get("/dead-letters", dead_letters_page),
        web.post("/dead-letters/{dead_letter_id}/replay", replay_dead_letter),
        web.get("/audit", audit_page),
        web.get("/static/inbox.css", stylesheet),
        web.get("/static/inbox.js", script),
    ]
