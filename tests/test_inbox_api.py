"""The inbox's JSON API and the pages behind it, over real HTTP on both backends: the
OpenAPI description against the router, filters, actions as queue events, replies through
the door, merges, suggestions, attachments, the sanitised original, dead letters, SSE."""
from __future__ import annotations

import asyncio
import email
import json
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import FormData
from openapi_spec_validator import validate as validate_spec

from gateway.inbound import Inbound
from gateway.inbox.filters import Filters
from gateway.inbox.i18n import translator
from gateway.inbox.present import deadlines_view, row_view
from tests.conftest import registry_of
from tests.test_email_support import adapter_of, relay_fixture, smtp_channel, smtp_send  # noqa: F401 (the relay fixture)
from tests.test_inbox_support import (
    BEARER,
    SPEC,
    WEB_COMPLAINT,
    api,
    complaint,
    inbox_section,
    login,
    page_csrf,
    submit_web,
)

MOSCOW = ZoneInfo("Europe/Moscow")
TWO_DOORS = {"web": {"adapter": "web_form", "rate_limit_per_minute": 0},
             "site": {"adapter": "web_form", "path": "/site", "rate_limit_per_minute": 0}}
TO = ["complaints@operator.example"]


@pytest.fixture(params=["sqlite", "redis"])
async def gateway(request, make_config, start_gateway, redis_url):
    return await start_gateway(make_config(backend=request.param, channels=TWO_DOORS, inbox=inbox_section()))


@pytest.fixture
async def mail_gateway(make_config, start_gateway, relay):
    client = await start_gateway(make_config(channels={"web": TWO_DOORS["web"], "email": smtp_channel(relay.port)},
                                             inbox=inbox_section()))
    await login(client)
    return client


def html_mail(html: str, *, sender: str = "Иван Петров <ivan@example.net>", subject: str = "Нет интернета") -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, TO[0], subject
    message["Date"], message["Message-ID"] = formatdate(), make_msgid(domain="example.net")
    message.set_content("Текст жалобы: интернет не работает.")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=policy.SMTP)


# -- the description --------------------------------------------------------------------
async def test_openapi_description_is_valid_and_matches_the_router(make_config, start_gateway):
    validate_spec(SPEC)
    client = await start_gateway(make_config(inbox=inbox_section()))
    inbox_app = next(r for r in client.server.app.router.resources() if r.canonical == "/inbox")._app  # type: ignore[attr-defined]
    routed = {(route.method.lower(), route.resource.canonical) for route in inbox_app.router.routes()
              if route.resource.canonical.startswith("/inbox/api/") and route.method != "HEAD"}
    described = {(method, path) for path, item in SPEC["paths"].items() for method in item if method != "parameters"}
    assert routed == described
    text = await (await client.get("/inbox/api/openapi.yaml", headers=BEARER)).text()
    assert "openapi: 3.1.0" in text


# -- filters ----------------------------------------------------------------------------
async def test_filters_select_by_channel_urgency_state_language_date_and_text(gateway):
    registry = registry_of(gateway)
    noon = datetime.now(MOSCOW).replace(hour=12, minute=0, second=0, microsecond=0).astimezone(UTC)
    a = complaint("web", text="Интернет пропал ночью", language="ru", received=noon - timedelta(days=3))
    b = complaint("site", text="Brak internetu od rana", urgency="high", language="pl", received=noon - timedelta(days=1))
    c = complaint("web", text="Billing error, charged twice", urgency="immediate", language="en", received=noon)
    for item in (a, b, c):
        await registry.submit(item)
    await api(gateway, "POST", f"/inbox/api/complaints/{b.id}/actions", expect=201, json={"action": "claim"}, headers=BEARER)

    async def ids(**query: str) -> list[str]:
        body = await api(gateway, "GET", "/inbox/api/complaints", expect=200, params=query, headers=BEARER)
        return [row["complaint"]["id"] for row in body["items"]]

    day = (noon - timedelta(days=2)).astimezone(MOSCOW).date().isoformat()
    assert await ids() == [c.id, b.id, a.id]
    assert await ids(channel="site") == [b.id]
    assert await ids(urgency="immediate") == [c.id]
    assert await ids(state="claimed") == [b.id]
    assert await ids(state="open") == [c.id, a.id]
    assert await ids(language="pl") == [b.id]
    assert await ids(since=day) == [c.id, b.id]
    assert await ids(until=day) == [a.id]
    assert await ids(q="ИНТЕРНЕТ") == [a.id]
    assert await ids(q="internetu", channel="site") == [b.id]
    assert await ids(customer_id=a.customer.customer_id or "") == [a.id]
    page = await api(gateway, "GET", "/inbox/api/complaints", expect=200, params={"limit": "2"}, headers=BEARER)
    assert page["next_before"] == b.id
    assert await ids(before=page["next_before"]) == [a.id]
    bad = await api(gateway, "GET", "/inbox/api/complaints", expect=400, params={"urgency": "urgent", "since": "yesterday"},
                    headers=BEARER)
    assert set(bad["fields"]) == {"urgency", "since"}


async def test_the_overdue_filter_lists_the_red_rows_in_the_api_the_page_and_the_live_view(gateway):
    registry = registry_of(gateway)
    now = datetime.now(UTC)
    stamp = lambda hours: (now + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")  # noqa: E731
    late = complaint("web", text="Ответа нет уже сутки", received=now - timedelta(hours=30), deadlines={"acknowledge": stamp(-22)})
    fresh = complaint("web", text="Новая жалоба на связь", received=now, deadlines={"acknowledge": stamp(8)})
    for item in (late, fresh):
        await registry.submit(item)
    body = await api(gateway, "GET", "/inbox/api/complaints", expect=200, params={"overdue": "1"}, headers=BEARER)
    assert [r["complaint"]["id"] for r in body["items"]] == [late.id]
    await api(gateway, "GET", "/inbox/api/complaints", expect=400, params={"overdue": "yes"}, headers=BEARER)
    await login(gateway)
    html = await (await gateway.get("/inbox/?overdue=1")).text()
    assert 'name="overdue" type="checkbox" value="1" checked' in html
    assert late.id in html and fresh.id not in html and "overdue by 22 h" in html
    filters = Filters.parse({"overdue": "1"}, "UTC")
    assert filters.matches(late.to_dict(), "new", "open") and not filters.matches(fresh.to_dict(), "new", "open")
    assert not filters.matches(late.to_dict(), "new", "closed")
    assert not filters.matches(late.to_dict(), "automatic", None)  # an automatic reply waits for no answer


def test_a_complaints_deadlines_are_shown_nearest_first_by_instant():
    deadlines = {"technical": "2026-03-10T12:00:00.500000Z", "respond": "2026-03-10T12:00:00Z",
                 "acknowledge": "2026-03-10T11:59:59+03:00", "legal": "soon"}
    shown = deadlines_view({"deadlines": deadlines}, datetime(2026, 3, 10, 6, tzinfo=UTC), translator("en"))
    assert [d["name"] for d in shown] == ["acknowledge", "respond", "technical"]


def test_an_automatic_reply_shows_no_deadline_in_the_list():
    """An automatic reply (an out-of-office answer, a bounce) opens no registration: nobody
    owes it an answer, so its row has no deadline to turn red."""
    late = complaint("web", text="Я в отпуске до понедельника", received=datetime.now(UTC) - timedelta(days=3)).to_dict()
    _ = translator("en")
    assert row_view(late, "automatic", None, None, ZoneInfo("UTC"), _)["deadline"] is None
    assert row_view(late, "new", "open", None, ZoneInfo("UTC"), _)["deadline"]["overdue"] is True


def test_the_live_view_compares_times_as_instants_not_as_text():
    """A message that came at a whole second is before a bound half a second later, though
    "09:00:00Z" sorts after "09:00:00.500000Z" as text."""
    message = {"received_at": "2026-03-10T09:00:00Z", "channel": "web", "text": "Нет связи", "customer": {}}
    assert not Filters.parse({"since": "2026-03-10T09:00:00.5Z"}, "UTC").matches(message, "new", "open")
    assert Filters.parse({"until": "2026-03-10T09:00:00.5Z"}, "UTC").matches(message, "new", "open")
    assert Filters.parse({"since": "2026-03-10T12:00:00+03:00"}, "UTC").matches(message, "new", "open")
    assert not Filters.parse({"since": "2026-03-10"}, "UTC").matches({**message, "received_at": "yesterday"}, "new", "open")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_search_stopped_by_its_scan_limit_says_so_and_its_link_goes_on_to_the_older_match(
        backend, make_config, start_gateway, redis_url):
    client = await start_gateway(make_config(backend=backend, channels=TWO_DOORS, inbox=inbox_section(search_scan_limit=3)))
    registry = registry_of(client)
    now = datetime.now(UTC)
    old = complaint("web", text="Старый счёт выставлен дважды", received=now - timedelta(hours=2))
    await registry.submit(old)
    for i in range(5):
        await registry.submit(complaint("web", text=f"Нет связи, жалоба {i}", received=now - timedelta(minutes=50 - i)))

    query = {"q": "счёт"}  # the old complaint is the oldest message and the only match; five newer ones come first
    first = await api(client, "GET", "/inbox/api/complaints", expect=200, params=query, headers=BEARER)
    assert (first["items"], first["scan_limited"]) == ([], True) and first["next_before"]
    second = await api(client, "GET", "/inbox/api/complaints", expect=200, params={**query, "before": first["next_before"]},
                       headers=BEARER)
    assert [r["complaint"]["id"] for r in second["items"]] == [old.id]
    assert (second["next_before"], second["scan_limited"]) == (None, False)

    await login(client)  # anna reads English
    html = await (await client.get("/inbox/?q=%D1%81%D1%87%D1%91%D1%82")).text()
    assert "The search looked at 3 messages and stopped there" in html and 'id="empty"' not in html
    link = re.search(r'<a rel="next" href="([^"]+)">Search older messages</a>', html)
    assert link, "no link to search on"
    assert old.id in await (await client.get(link.group(1).replace("&amp;", "&"))).text()


async def test_list_page_shows_counts_per_channel_and_overdue_deadlines_in_words(gateway):
    registry = registry_of(gateway)
    now = datetime.now(UTC)
    late = complaint("web", text="Срок ответа уже прошёл", received=now - timedelta(hours=10),
                     deadlines={"acknowledge": (now - timedelta(hours=2, minutes=1)).isoformat().replace("+00:00", "Z")})
    fresh = complaint("site", text="Новая жалоба", received=now,
                      deadlines={"acknowledge": (now + timedelta(hours=5, minutes=1)).isoformat().replace("+00:00", "Z")})
    for item in (late, fresh, complaint("web", text="Ещё одна жалоба")):
        await registry.submit(item)
    await login(gateway)
    html = await (await gateway.get("/inbox/")).text()
    assert '<li data-channel="site"><a href="/inbox/?channel=site">site</a>: <span class="count">1</span></li>' in html
    assert '<li data-channel="web"><a href="/inbox/?channel=web">web</a>: <span class="count">2</span></li>' in html
    assert '<span class="deadline is-overdue">' in html and "overdue by 2 h 1 min" in html
    assert "5 h 0 min left" in html
    filtered = await (await gateway.get("/inbox/?channel=site&q=%D0%BD%D0%BE%D0%B2%D0%B0%D1%8F")).text()
    assert fresh.id in filtered and late.id not in filtered
    assert "<li>urgency: expected" in await (await gateway.get("/inbox/?urgency=bogus")).text()


async def test_the_api_and_the_list_count_open_registrations_and_the_overdue_ones_per_deadline(gateway):
    registry = registry_of(gateway)
    now = datetime.now(UTC)
    stamp = lambda hours: (now + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")  # noqa: E731
    late = complaint("web", text="Ответа нет уже сутки", deadlines={"acknowledge": stamp(-3), "respond": stamp(30)})
    fresh = complaint("site", text="Новая жалоба на связь", deadlines={"acknowledge": stamp(5), "respond": stamp(40)})
    claimed = complaint("web", text="Счёт выставлен дважды", deadlines={"acknowledge": stamp(-9), "respond": stamp(-1)})
    soon = complaint("site", text="Опять пропала связь", deadlines={"acknowledge": stamp(0.5), "respond": stamp(40)})
    numbers = [(await registry.submit(item)).registration_number for item in (late, fresh, claimed, soon)]
    await registry.apply_action(numbers[2], "claim", "anna")
    body = await api(gateway, "GET", "/inbox/api/deadlines", expect=200, headers=BEARER)
    assert body["deadlines"] == {"acknowledge": {"pending": 3, "overdue": 1, "due_soon": 1},
                                 "respond": {"pending": 1, "overdue": 1, "due_soon": 0}}
    assert body["due_soon_minutes"] == 60
    assert abs(datetime.fromisoformat(body["at"].replace("Z", "+00:00")) - now) < timedelta(minutes=1)
    await api(gateway, "GET", "/inbox/api/deadlines", expect=401)
    assert (await gateway.get("/inbox/deadline-counts", allow_redirects=False)).status == 303  # to the login page
    await login(gateway)
    html = await (await gateway.get("/inbox/")).text()
    first = ('<li data-deadline="acknowledge">first answer: <span class="pending">3</span>,\n'
             '    <a class="overdue" href="/inbox/?overdue=1">1 overdue</a>,\n'
             '    <span class="due-soon">1 due within 60 min</span></li>')
    assert first in html and html.index(first) < html.index('<li data-deadline="respond">decision: <span class="pending">1</span>')
    fragment = await gateway.get("/inbox/deadline-counts")  # what the list's script reads to refresh them
    assert fragment.status == 200 and (await fragment.text()).startswith('<ul id="deadline-counts">')
    assert first in await fragment.text()
    await registry.apply_action(numbers[2], "close", "anna")
    await registry.apply_action(numbers[0], "close", "anna")
    await registry.apply_action(numbers[3], "close", "anna")
    html = await (await gateway.get("/inbox/")).text()
    assert '<li data-deadline="acknowledge">first answer: <span class="pending">1</span></li>' in html
    assert 'data-deadline="respond"' not in html


# -- actions ----------------------------------------------------------------------------
async def test_an_acknowledgement_the_gateway_gave_up_on_shows_on_the_complaint_and_operators_cannot_post_one(gateway):
    registry = registry_of(gateway)
    receipt = await submit_web(gateway)
    await registry.apply_action(receipt["registration_number"], "acknowledgement_failed", "gateway",
                                {"channel": "telegram", "attempts": 1, "error": "Forbidden: bot was blocked by the user"})
    await login(gateway)
    page = await (await gateway.get(f"/inbox/complaints/{receipt['id']}")).text()
    assert "the number did not reach the customer" in page and "telegram: Forbidden: bot was blocked by the user" in page
    detail = await api(gateway, "GET", f"/inbox/api/complaints/{receipt['id']}", expect=200, headers=BEARER)
    assert [(a["action"], a["operator"], a["state"]) for a in detail["actions"]] == [("acknowledgement_failed", "gateway", "open")]
    refused = await api(gateway, "POST", f"/inbox/api/complaints/{receipt['id']}/actions", expect=422,
                        json={"action": "acknowledgement_failed"}, headers=BEARER)
    assert refused["error"] == "invalid"
    other = await submit_web(gateway, phone="+79160000777", text="Второе обращение, номер получен.")
    listed = await api(gateway, "GET", "/inbox/api/complaints?undelivered=1", expect=200, headers=BEARER)
    assert [(i["complaint"]["id"], i["undelivered"]) for i in listed["items"]] == [(receipt["id"], True)]
    everything = await api(gateway, "GET", "/inbox/api/complaints", expect=200, headers=BEARER)
    assert {i["complaint"]["id"]: i["undelivered"] for i in everything["items"]} == {receipt["id"]: True, other["id"]: False}
    await api(gateway, "GET", "/inbox/api/complaints?undelivered=yes", expect=400, headers=BEARER)
    filtered = await (await gateway.get("/inbox/?undelivered=1")).text()
    assert receipt["registration_number"] in filtered and other["registration_number"] not in filtered
    assert 'id="f-undelivered" name="undelivered" type="checkbox" value="1" checked' in filtered
    assert filtered.count('class="tag tag-undelivered">number not delivered<') == 1


async def test_actions_are_recorded_with_operator_and_time_and_emitted_as_events(gateway):
    registry = registry_of(gateway)
    receipt = await submit_web(gateway)
    await registry.read_events("company", "c1", count=10)  # the company's own consumer took the "new" event
    await login(gateway)
    token = await page_csrf(gateway)
    for action in ("claim", "note", "close"):
        resp = await gateway.post(f"/inbox/complaints/{receipt['id']}/{action}", data={"csrf_token": token, "text": "перезвонить"},
                                  allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == f"/inbox/complaints/{receipt['id']}"
    await api(gateway, "POST", f"/inbox/api/complaints/{receipt['id']}/actions", expect=201, json={"action": "reopen"},
              headers=BEARER)
    recorded = await registry.actions(receipt["registration_number"])
    assert [(a["action"], a["operator"]) for a in recorded] == [("claim", "anna"), ("note", "anna"), ("close", "anna"),
                                                                ("reopen", "api:crm")]
    assert all(datetime.fromisoformat(a["at"]) <= datetime.now(UTC) for a in recorded)
    assert recorded[1]["details"]["text"] == "перезвонить"
    events = await registry.read_events("company", "c1", count=10)
    assert [e.event for e in events] == ["claim", "note", "close", "reopen"]
    assert {e.registration_number for e in events} == {receipt["registration_number"]}
    detail = await api(gateway, "GET", f"/inbox/api/complaints/{receipt['id']}", expect=200, headers=BEARER)
    assert detail["state"] == "open" and [a["action"] for a in detail["actions"]] == ["claim", "note", "close", "reopen"]
    page = await (await gateway.get(f"/inbox/complaints/{receipt['id']}")).text()
    assert "перезвонить" in page and "Anna Operator" in page
    empty = await api(gateway, "POST", f"/inbox/api/complaints/{receipt['id']}/actions", expect=422,
                      json={"action": "note", "text": "  "}, headers=BEARER)
    assert empty["error"] == "text_required"
    await api(gateway, "GET", "/inbox/api/complaints/nope", expect=404, headers=BEARER)


async def test_reply_through_a_door_that_cannot_answer_is_refused_clearly(gateway):
    receipt = await submit_web(gateway)
    refused = await api(gateway, "POST", f"/inbox/api/complaints/{receipt['id']}/reply", expect=409,
                        json={"text": "Мы проверили линию."}, headers=BEARER)
    assert refused["error"] == "door_cannot_reply"
    assert refused["message"] == "The web door cannot send replies: answer the customer by e-mail or phone (email: ivan@example.com)."
    assert await registry_of(gateway).actions(receipt["registration_number"]) == []
    await login(gateway)
    form = await gateway.post(f"/inbox/complaints/{receipt['id']}/reply",
                              data={"csrf_token": await page_csrf(gateway), "text": "Мы проверили линию."})
    assert "The web door cannot send replies" in await form.text()


async def test_reply_by_email_goes_out_through_the_relay_and_is_recorded(mail_gateway, relay):
    from tests.test_email_support import make_mail

    session = await smtp_send(adapter_of(mail_gateway, "email").port, make_mail(), TO)
    number = session.data[1].decode().split()[-1]
    await relay.next_message()  # the acknowledgement
    row = (await api(mail_gateway, "GET", "/inbox/api/complaints", expect=200, params={"channel": "email"}))["items"][0]
    record = await api(mail_gateway, "POST", f"/inbox/api/complaints/{row['complaint']['id']}/reply", expect=201,
                       json={"text": "Мастер придёт завтра с 10 до 12."},
                       headers={"X-CSRF-Token": (await (await mail_gateway.get("/inbox/api/me")).json())["csrf_token"]})
    assert record["action"] == "reply" and record["operator"] == "anna" and record["details"]["channel"] == "email"
    _sender, rcpt_tos, data = await relay.next_message()
    sent = email.message_from_bytes(data, policy=policy.default)
    assert rcpt_tos == ["ivan@example.net"] and "Auto-Submitted" not in sent  # a person's answer, not a robot's
    assert "Мастер придёт завтра с 10 до 12." in sent.get_body(("plain",)).get_content()
    assert number in sent["Subject"]
    actions = await registry_of(mail_gateway).actions(number)
    assert [a["action"] for a in actions] == ["reply"]


# -- customers --------------------------------------------------------------------------
async def test_merge_and_unmerge_are_audited_and_reversible(gateway):
    first = await submit_web(gateway)
    second = await submit_web(gateway, email="petrov@example.org", phone="+7 903 765-43-21", text="Счёт за май выставлен дважды.")
    registry = registry_of(gateway)
    a = (await registry.get_message(first["id"])).customer.customer_id
    b = (await registry.get_message(second["id"])).customer.customer_id
    assert a != b
    merged = await api(gateway, "POST", f"/inbox/api/customers/{a}/merge", expect=201, json={"source": b}, headers=BEARER)
    target = await api(gateway, "GET", f"/inbox/api/customers/{a}", expect=200, headers=BEARER)
    assert {"kind": "email", "value": "petrov@example.org"} in target["identities"]
    assert set(target["registrations"]) == {first["registration_number"], second["registration_number"]}
    assert [m["id"] for m in target["merges"]] == [merged["merge_id"]]
    assert (await api(gateway, "GET", f"/inbox/api/customers/{b}", expect=200, headers=BEARER))["merged_into"] == a
    audit = await api(gateway, "GET", "/inbox/api/audit", expect=200, headers=BEARER)
    assert audit["items"][0]["action"] == "customers_merged" and audit["items"][0]["operator"] == "api:crm"

    await api(gateway, "POST", f"/inbox/api/merges/{merged['merge_id']}/undo", expect=200, headers=BEARER)
    alone = await api(gateway, "GET", f"/inbox/api/customers/{a}", expect=200, headers=BEARER)
    assert {"kind": "email", "value": "petrov@example.org"} not in alone["identities"]
    assert alone["registrations"] == [first["registration_number"]]
    assert (await api(gateway, "GET", "/inbox/api/audit", expect=200, headers=BEARER))["items"][0]["action"] == "customers_unmerged"
    await api(gateway, "POST", f"/inbox/api/merges/{merged['merge_id']}/undo", expect=409, headers=BEARER)
    await api(gateway, "POST", f"/inbox/api/customers/{a}/merge", expect=409, json={"source": a}, headers=BEARER)
    await api(gateway, "POST", f"/inbox/api/customers/{a}/merge", expect=404, json={"source": "nobody"}, headers=BEARER)

    await login(gateway)
    token = await page_csrf(gateway)
    resp = await gateway.post(f"/inbox/customers/{a}/merge", data={"csrf_token": token, "source": b})
    page = await resp.text()
    assert "Customers merged." in page and "petrov@example.org" in page and second["registration_number"] in page


async def test_merge_suggestions_are_rejected_or_accepted(gateway):
    registry = registry_of(gateway)

    async def suggestion_for(tag: str) -> dict[str, Any]:
        email, phone = f"{tag}@example.com", {"x": "+7 916 111-22-33", "y": "+7 916 444-55-66"}[tag]
        await submit_web(gateway, email=email, phone="", text=f"Жалоба по почте {tag}, нет связи.")
        await submit_web(gateway, email="", phone=phone, preferred_channel="sms", text=f"Жалоба по телефону {tag}, нет связи.")
        await submit_web(gateway, email=email, phone=phone, text=f"Третья жалоба {tag}: всё ещё нет связи.")
        items = (await api(gateway, "GET", "/inbox/api/merge-suggestions", expect=200, headers=BEARER))["items"]
        assert len(items) == 1
        return items[0]

    first = await suggestion_for("x")
    await api(gateway, "POST", f"/inbox/api/merge-suggestions/{first['id']}/reject", expect=200, headers=BEARER)
    assert (await api(gateway, "GET", "/inbox/api/merge-suggestions", expect=200, headers=BEARER))["items"] == []
    assert (await registry.audit_log(1))[0]["action"] == "suggestion_rejected"

    second = await suggestion_for("y")
    await login(gateway)
    page = await (await gateway.get("/inbox/suggestions")).text()
    assert f'id="suggestion-{second["id"]}"' in page
    resp = await gateway.post(f"/inbox/suggestions/{second['id']}/accept", data={"csrf_token": await page_csrf(gateway)},
                              allow_redirects=False)
    assert resp.headers["Location"] == f"/inbox/customers/{second['customer_a']}"
    kept = await registry.get_customer(second["customer_a"])
    assert {"kind": "phone", "value": "+79164445566"} in kept["identities"]
    assert {"kind": "email", "value": "y@example.com"} in kept["identities"]
    assert (await api(gateway, "GET", "/inbox/api/merge-suggestions", expect=200, headers=BEARER))["items"] == []
    await api(gateway, "POST", f"/inbox/api/merge-suggestions/{second['id']}/accept", expect=404, headers=BEARER)


# -- the complaint's files ----------------------------------------------------------------
async def test_attachments_download_as_attachments_with_safe_names(make_config, start_gateway):
    client = await start_gateway(make_config(inbox=inbox_section()))
    form = FormData()
    for key, value in WEB_COMPLAINT.items():
        form.add_field(key, value)
    form.add_field("attachments", b"%PDF-1.4 bill", filename="счёт за май.pdf", content_type="application/pdf")
    form.add_field("attachments", b"<script>alert(1)</script>", filename='x"><img src=x onerror=alert(1)>.html',
                   content_type="text/html")
    receipt = await (await client.post("/web/complaints", data=form)).json()
    await login(client)
    pdf = await client.get(f"/inbox/complaints/{receipt['id']}/attachments/0")
    assert pdf.status == 200 and await pdf.read() == b"%PDF-1.4 bill"
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Content-Disposition"] == (
        "attachment; filename=\"____ __ ___.pdf\"; filename*=UTF-8''%D1%81%D1%87%D1%91%D1%82%20%D0%B7%D0%B0%20%D0%BC%D0%B0%D0%B9.pdf")
    assert pdf.headers["X-Content-Type-Options"] == "nosniff"
    html = await client.get(f"/inbox/complaints/{receipt['id']}/attachments/1")
    assert html.headers["Content-Type"].startswith("text/html")
    assert html.headers["Content-Disposition"].startswith('attachment; filename="x___img src=x onerror=alert(1)_.html"')
    assert "sandbox" in html.headers["Content-Security-Policy"]
    page = await (await client.get(f"/inbox/complaints/{receipt['id']}")).text()
    assert "x___img src=x onerror=alert(1)_.html" in page
    assert "<img src=x" not in page
    assert (await client.get(f"/inbox/complaints/{receipt['id']}/attachments/2")).status == 404
    logged_out = await client.post("/inbox/logout", data={"csrf_token": await page_csrf(client)})
    assert logged_out.status == 200
    assert (await client.get(f"/inbox/complaints/{receipt['id']}/attachments/0", allow_redirects=False)).status == 303


async def test_html_mail_original_is_sanitised_and_sandboxed(mail_gateway):
    payload = ('<p>Текст жалобы в HTML</p><script>parent.alert(1)</script><img src="https://tracker.example/p.gif" '
               'onerror="alert(2)"><a href="javascript:alert(3)">ссылка</a><form action="https://evil.example"><input></form>')
    raw = html_mail(payload)
    session = await smtp_send(adapter_of(mail_gateway, "email").port, raw, TO)
    assert session.data[0] == 250, session.data
    row = (await api(mail_gateway, "GET", "/inbox/api/complaints", expect=200, params={"channel": "email"}))["items"][0]
    cid = row["complaint"]["id"]
    original = await mail_gateway.get(f"/inbox/complaints/{cid}/original")
    body = await original.text()
    csp = original.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp and "img-src data:" in csp
    assert original.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "Текст жалобы в HTML" in body and "Нет интернета" in body  # the body and the Subject header
    lowered = body.lower()
    assert "<script" not in lowered and "onerror" not in lowered and "javascript:" not in lowered and "<form" not in lowered
    page = await (await mail_gateway.get(f"/inbox/complaints/{cid}")).text()
    assert f'<iframe class="original" title="Original as received" sandbox src="/inbox/complaints/{cid}/original"' in page
    download = await mail_gateway.get(f"/inbox/complaints/{cid}/raw")
    assert await download.read() == raw
    assert download.headers["Content-Type"] == "message/rfc822"
    assert download.headers["Content-Disposition"].startswith('attachment; filename="') and ".eml" in download.headers["Content-Disposition"]


async def test_a_web_forms_original_kept_in_the_complaint_is_shown_and_downloaded(gateway):
    await login(gateway)
    form = {"name": "Анна", "email": "anna@example.com", "text": "Нет интернета <b>третий</b> день"}
    posted = await gateway.post("/web/complaints", json=form)
    assert posted.status == 201
    cid = (await posted.json())["id"]
    original = await gateway.get(f"/inbox/complaints/{cid}/original")
    body = await original.text()
    assert original.status == 200 and "sandbox" in original.headers["Content-Security-Policy"]
    assert "Нет интернета &lt;b&gt;третий&lt;/b&gt; день" in body  # the JSON, indented, as text
    download = await gateway.get(f"/inbox/complaints/{cid}/raw")
    raw = await download.read()
    assert json.loads(raw) == form and download.headers["Content-Type"] == "application/json"
    assert download.headers["Content-Disposition"].startswith('attachment; filename="') and ".json" in download.headers["Content-Disposition"]
    page = await (await gateway.get(f"/inbox/complaints/{cid}")).text()
    assert f"(application/json, {len(raw)} B)" in page


# -- dead letters -------------------------------------------------------------------------
async def test_dead_letters_are_listed_with_their_reason_and_replayed(gateway):
    registry = registry_of(gateway)
    good = Inbound(channel="web", message_id="web:replay-1", identities=[("email", "late@example.com")],
                   text="Письмо, которое не удалось обработать сразу.", language="ru")
    empty = Inbound(channel="web", message_id="web:replay-2", identities=[("email", "empty@example.com")])
    good_id = await registry.add_dead_letter(good.to_record(), "the language detector was not available")
    empty_id = await registry.add_dead_letter(empty.to_record(), "the message has no text, no subject and no attachment")
    listed = await api(gateway, "GET", "/inbox/api/dead-letters", expect=200, headers=BEARER)
    assert {(d["id"], d["reason"]) for d in listed["items"]} == {
        (good_id, "the language detector was not available"),
        (empty_id, "the message has no text, no subject and no attachment")}
    receipt = await api(gateway, "POST", f"/inbox/api/dead-letters/{good_id}/replay", expect=200, headers=BEARER)
    assert receipt["status"] == "new" and receipt["registration_number"]
    assert (await registry.get_message(receipt["complaint_id"])).text == "Письмо, которое не удалось обработать сразу."
    still = await api(gateway, "POST", f"/inbox/api/dead-letters/{empty_id}/replay", expect=422, headers=BEARER)
    assert still["error"] == "still_failing"
    await login(gateway)
    page = await (await gateway.get("/inbox/dead-letters")).text()
    assert "the message has no text, no subject and no attachment" in page and good_id not in page
    assert f'action="/inbox/dead-letters/{empty_id}/replay"' in page


# -- live updates -------------------------------------------------------------------------
async def _next_event(stream: Any) -> tuple[str, dict[str, Any]]:
    """The next event within 10 s (keep-alive comments do not count)."""
    name, data = "", ""
    async with asyncio.timeout(10):
        while True:
            line = (await stream.content.readline()).decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                return name, json.loads(data)


class CancelTurnedIntoAnError:
    """A registry whose blocking read, cancelled, raises an error of its own instead of the
    cancellation (as a client library may report a read cut short)."""

    backend = "redis"

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.deleted: list[str] = []

    async def create_group(self, group: str, at_end: bool = False) -> None:
        return None

    async def read_events(self, group: str, consumer: str, count: int = 10, block_ms: int = 0) -> list[Any]:
        self.reading.set()
        try:
            await asyncio.sleep(block_ms / 1000)
        except asyncio.CancelledError:
            raise ConnectionError("the read was cut short") from None
        return []

    async def delete_group(self, group: str) -> None:
        self.deleted.append(group)


async def test_live_updates_stop_when_the_registry_turns_the_cancellation_into_an_error():
    from gateway.inbox.live import LiveHub

    registry = CancelTurnedIntoAnError()
    hub = LiveHub(registry, "inbox-test", batch=10, poll_interval=0.2, buffer=10, max_subscribers=0)  # type: ignore[arg-type]
    await hub.start()
    await asyncio.wait_for(registry.reading.wait(), 5)
    await asyncio.wait_for(hub.stop(), 5)  # before: the loop took the error for an outage and read on for ever
    assert hub.failures == 0 and registry.deleted == ["inbox-test"]


async def test_event_stream_pushes_matching_rows_and_state_changes(gateway):
    await login(gateway)
    stream = await gateway.get("/inbox/events?channel=web")
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert (await _next_event(stream))[0] == "hello"
    await (await gateway.post("/site/complaints", json={**WEB_COMPLAINT, "text": "Другая дверь, не для этого фильтра."})).json()
    receipt = await submit_web(gateway, name='<img src=x onerror="alert(1)">')
    name, row = await _next_event(stream)
    assert name == "row" and row["id"] == receipt["id"] and row["channel"] == "web"
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in row["html"] and "<img" not in row["html"]
    await api(gateway, "POST", f"/inbox/api/complaints/{receipt['id']}/actions", expect=201, json={"action": "claim"},
              headers=BEARER)
    name, state = await _next_event(stream)
    assert name == "state" and state == {"registration_number": receipt["registration_number"], "state": "claimed",
                                         "text": "claimed · api:crm"}
    stream.close()


async def test_event_stream_marks_a_complaint_whose_number_did_not_reach_the_customer(gateway):
    await login(gateway)
    listing = await gateway.get("/inbox/events")
    undelivered_only = await gateway.get("/inbox/events?undelivered=1")
    assert (await _next_event(listing))[0] == "hello" and (await _next_event(undelivered_only))[0] == "hello"
    receipt = await submit_web(gateway)
    assert (await _next_event(listing))[0] == "row"
    await registry_of(gateway).apply_action(receipt["registration_number"], "acknowledgement_failed", "gateway",
                                            {"channel": "web", "attempts": 8, "error": "HTTP 502"})
    assert await _next_event(listing) == ("undelivered", {"registration_number": receipt["registration_number"],
                                                          "text": "number not delivered"})
    assert (await _next_event(undelivered_only))[0] == "resync"  # that list gains a row: the page reads it again
    follow_up = await gateway.post("/web/complaints", json={**WEB_COMPLAINT, "registration_number": receipt["registration_number"],
                                                            "text": "Дополнение: роутер так и не заработал."})
    assert (await follow_up.json())["status"] == "follow_up"
    name, row = await _next_event(listing)  # a later message of that registration comes tagged
    assert name == "row" and "tag-undelivered" in row["html"]
    listing.close()
    undelivered_only.close()
