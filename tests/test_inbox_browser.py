"""The inbox in a real browser (Debian's Chromium driven by Playwright) against a real
gateway: log in, watch complaints from the web form and from SMTP appear live, open the
customer, claim, reply by e-mail, and check that script in complaint fields stays text.
Screenshots are kept under test-artifacts/inbox/."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import registry_of
from tests.test_email_support import adapter_of, relay_fixture, smtp_channel, smtp_send  # noqa: F401 (the relay fixture)
from tests.test_inbox_api import TO, html_mail
from tests.test_inbox_support import PASSWORD, WEB_COMPLAINT, complaint, inbox_section

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "inbox"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAYLOADS = {
    "name": "<img src=x onerror=\"window.__pwned='name';alert('name')\">",
    "subject": "<script>window.__pwned='subject';alert('subject')</script>",
    "text": "Нет интернета третий день.</td><svg onload=\"alert('text')\"></svg><b id=\"injected\">жирный</b>",
    "file": "\"><img src=x id=injected-file onerror=alert('file')>.txt",
}
expect.set_options(timeout=10_000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class Watch:
    """What a page did that it must not: dialogs, script errors, CSP violations."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def log_in(page: Page, base: str) -> None:
    await page.goto(base + "/inbox/")
    await expect(page).to_have_url(base + "/inbox/login?next=/inbox/")
    await page.get_by_label("User name").fill("anna")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(base + "/inbox/")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "on")


async def test_operator_sees_complaints_live_opens_the_customer_and_replies(make_config, start_gateway, relay, browser):
    client = await start_gateway(make_config(channels={"web": {"adapter": "web_form", "rate_limit_per_minute": 0},
                                                       "email": smtp_channel(relay.port)}, inbox=inbox_section()))
    base = str(client.make_url("")).rstrip("/")
    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, base)
    await page.evaluate("window.__sameDocument = true")
    await expect(page.locator("#deadline-counts li.none")).to_be_visible()

    # a web-form complaint with script in every field, and a file with a hostile name
    form = FormData()
    for key, value in {**WEB_COMPLAINT, "name": PAYLOADS["name"], "subject": PAYLOADS["subject"],
                       "text": PAYLOADS["text"]}.items():
        form.add_field(key, value)
    form.add_field("attachments", b"plain bytes", filename=PAYLOADS["file"], content_type="text/plain")
    web = await (await client.post("/web/complaints", data=form)).json()
    web_row = page.locator(f"#row-{web['id']}")
    await expect(web_row).to_be_visible()
    await expect(web_row).to_contain_text(PAYLOADS["subject"])
    await expect(web_row).to_contain_text(PAYLOADS["name"])
    first_answer = page.locator('#deadline-counts li[data-deadline="acknowledge"] .pending')
    await expect(first_answer).to_have_text("1")  # the counts per deadline read again after the new row
    await registry_of(client).apply_action(web["registration_number"], "acknowledgement_failed", "gateway",
                                           {"channel": "web", "attempts": 8, "error": "HTTP 502"})
    await expect(web_row.locator(".tag-undelivered")).to_have_text("number not delivered")  # tagged live

    # an e-mail with script in its HTML part
    session = await smtp_send(adapter_of(client, "email").port, html_mail(
        "<p>Текст жалобы: интернет не работает.</p><script>alert('mail')</script><img src=x onerror=alert('mail-img')>",
        subject="Нет интернета"), TO)
    number = session.data[1].decode().split()[-1]
    await relay.next_message()  # the acknowledgement
    mail_row = page.locator("#rows tr", has_text=number)
    await expect(mail_row).to_be_visible()
    await expect(page.locator("#rows tr").first).to_contain_text(number)  # the newest at the top
    await expect(page.locator('#channel-counts li[data-channel="email"] .count')).to_have_text("1")
    await expect(first_answer).to_have_text("2")
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    await expect(page.locator("#live-status")).to_contain_text("New complaint")
    await shot(page, "1-list-live")

    # the payloads stayed text
    assert watch.dialogs == []
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("#injected, #injected-file, #rows svg, #rows script").count() == 0

    # the web complaint: text as text, the file by its safe name, the door that cannot answer says so
    await web_row.get_by_role("link", name=web["registration_number"]).click()
    await expect(page.locator("#complaint-text")).to_have_text(PAYLOADS["text"])
    await expect(page.get_by_role("heading", name=PAYLOADS["subject"])).to_be_visible()
    await expect(page.locator("#attachments")).to_contain_text("img src=x id=injected-file onerror=alert('file')_.txt")
    await expect(page.locator("#reply-hint")).to_contain_text("The web door cannot send replies")
    await expect(page.locator("#ack-text")).to_contain_text(web["registration_number"])
    assert await page.locator("#injected, #injected-file, main svg, main script").count() == 0
    await shot(page, "2-web-complaint")

    # the e-mail complaint: the original in a sandbox, claim, reply through the mail door
    await page.go_back()
    await page.locator("#rows tr", has_text=number).get_by_role("link", name=number).click()
    original = page.frame_locator("iframe.original")
    await expect(original.locator("body")).to_contain_text("Текст жалобы: интернет не работает.")
    assert await original.locator("script, img[onerror]").count() == 0
    await page.get_by_role("button", name="Claim").click()
    await expect(page.locator(".flash")).to_have_text("Claimed.")
    await expect(page.locator("#state")).to_have_text("claimed · anna")
    await page.get_by_label("Reply to the customer through their door").fill("Мастер придёт завтра с 10 до 12.")
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.locator(".flash")).to_have_text("Reply sent through email.")
    await expect(page.locator("#history")).to_contain_text("replied · anna")
    _sender, rcpt_tos, data = await relay.next_message()
    reply = message_from_bytes(data, policy=policy.default)
    assert rcpt_tos == ["ivan@example.net"] and number in reply["Subject"]
    assert "Мастер придёт завтра с 10 до 12." in reply.get_body(("plain",)).get_content()
    await shot(page, "3-mail-complaint-replied")

    # the customer, across doors: the e-mail identity and the complaint
    await page.locator("#customer-link").click()
    await expect(page.locator("#identities")).to_contain_text("ivan@example.net")
    await expect(page.get_by_role("heading", name=number, exact=False)).to_be_visible()
    await shot(page, "4-customer")
    assert watch.dialogs == []
    # the only thing any policy blocked: the mail's remote image inside the sandboxed original
    blocked = [e for e in watch.errors if "Content Security Policy" in e or "Refused" in e]
    assert blocked and all('violates the following Content Security Policy directive: "img-src data:"' in e for e in blocked)
    await context.close()


def _luminance(rgb: list[float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(fg: list[float], bg: list[float]) -> float:
    high, low = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


COLOURS = """(selector) => { const el = document.querySelector(selector); const s = getComputedStyle(el);
  let bg = null; for (let n = el; n; n = n.parentElement) { const c = getComputedStyle(n).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') { bg = c; break; } }
  const nums = (c) => c.match(/[\\d.]+/g).map(Number); return [nums(s.color), nums(bg || 'rgb(255,255,255)')]; }"""


async def test_inbox_works_on_a_phone_by_keyboard_with_readable_contrast(make_config, start_gateway, browser):
    from datetime import datetime, timedelta

    client = await start_gateway(make_config(inbox=inbox_section()))
    now = datetime.now(UTC)
    late = complaint("web", text="Обращение с истёкшим сроком первого ответа.", received=now - timedelta(hours=9),
                     deadlines={"acknowledge": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")})
    await registry_of(client).submit(late)
    base = str(client.make_url("")).rstrip("/")
    context = await browser.new_context(locale="pl-PL", viewport={"width": 375, "height": 740}, is_mobile=True,
                                        has_touch=True)
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(base + "/inbox/login")
    await expect(page.get_by_role("heading", name="Logowanie do skrzynki reklamacji")).to_be_visible()
    assert await page.evaluate("document.activeElement.id") == "username"  # autofocus: type at once
    assert await page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"  # visible focus
    await page.keyboard.type("olga")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(base + "/inbox/")
    # Olga has no language of her own: the browser's Polish is used
    await expect(page.get_by_role("heading", name="Wszystkie reklamacje")).to_be_visible()
    await page.keyboard.press("Tab")  # the first stop: the skip link, shown when focused
    assert await page.evaluate("document.activeElement.className") == "skip"
    assert (await page.locator(".skip").bounding_box() or {}).get("x", -1) >= 0
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    overdue = page.locator(f"#row-{late.id} .deadline.is-overdue")
    await expect(overdue).to_contain_text("po terminie o 1 godz.")  # said in words, not only in red
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    await expect(page.locator(f"#row-{late.id} .cell-label").first).to_be_visible()
    await shot(page, "5-phone-list")
    for selector in ("body", ".live", f"#row-{late.id} a", f"#row-{late.id} .deadline.is-overdue", ".filters button",
                     ".cell-label"):
        fg, bg = await page.evaluate(COLOURS, selector)
        assert _contrast(fg, bg) >= 4.5, (selector, fg, bg)
    await page.locator(f"#row-{late.id} a").first.click()
    await expect(page.locator("#complaint-text")).to_have_text("Обращение с истёкшим сроком первого ответа.")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await shot(page, "6-phone-complaint")
    assert watch.dialogs == [] and watch.errors == []
    await context.close()
