"""Access to the inbox over real HTTP: login, session cookie, lockout, CSRF, bearer tokens,
security headers, language, and configuration mistakes caught at start-up."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from argon2 import PasswordHasher

from gateway.app import create_app
from gateway.config import ConfigError
from gateway.inbox import auth
from gateway.registry.base import RegistryError
from tests.conftest import registry_of
from tests.test_inbox_support import (
    API_TOKEN,
    BEARER,
    PASSWORD,
    api_csrf,
    csrf_of,
    inbox_section,
    login,
    page_csrf,
    submit_web,
)


@pytest.fixture
async def gateway(make_config, start_gateway):
    return await start_gateway(make_config(inbox=inbox_section(lockout={"attempts": 3, "window_seconds": 600,
                                                                        "duration_seconds": 900})))


async def test_inbox_requires_login(gateway):
    page = await gateway.get("/inbox/?channel=web", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/inbox/login?next=/inbox/?channel%3Dweb"
    api = await gateway.get("/inbox/api/complaints")
    assert api.status == 401 and api.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await gateway.get("/inbox/complaints/whatever", allow_redirects=False)).status == 303
    assert (await gateway.get("/web/")).status == 200  # the rest of the gateway is untouched


async def test_login_gives_an_encrypted_httponly_strict_cookie_and_logout_ends_it(gateway):
    resp = await login(gateway)
    assert resp.status == 303 and resp.headers["Location"] == "/inbox/"
    cookie = resp.cookies["cg_inbox"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/inbox"
    assert cookie.value.startswith("gAAAAA")  # a Fernet token: signed and encrypted
    assert "anna" not in cookie.value and "operator" not in cookie.value
    page = await gateway.get("/inbox/")
    assert page.status == 200 and "Anna Operator" in await page.text()

    token = csrf_of(await page.text())
    out = await gateway.post("/inbox/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/inbox/login"
    assert (await gateway.get("/inbox/", allow_redirects=False)).status == 303


async def test_secure_cookie_flag_is_set_when_configured(make_config, start_gateway):
    client = await start_gateway(make_config(inbox=inbox_section(cookie_secure=True)))
    resp = await client.get("/inbox/login")
    assert "Secure" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]


async def test_wrong_password_is_refused_and_repeated_failures_lock_out(gateway):
    for _ in range(2):
        resp = await login(gateway, password="wrong password")
        assert resp.status == 401
        assert "Неверное имя пользователя или пароль." in await resp.text()  # the default language: ru
    third = await login(gateway, password="still wrong")
    assert third.status == 401
    locked = await login(gateway, password=PASSWORD)  # even the right password, while locked
    assert locked.status == 429
    assert "Слишком много неудачных попыток. Повторите через 15 мин." in await locked.text()
    assert (await gateway.get("/inbox/", allow_redirects=False)).status == 303


async def test_unknown_user_fails_like_a_wrong_password(gateway):
    resp = await login(gateway, username="mallory")
    assert resp.status == 401 and "Неверное имя пользователя или пароль." in await resp.text()


async def test_guesses_sent_at_once_get_no_more_password_checks_than_the_limit(gateway, monkeypatch):
    checked: list[str] = []
    real = auth._verify
    monkeypatch.setattr(auth, "_verify", lambda password_hash, password: checked.append(password) or real(password_hash, password))
    answers = await asyncio.gather(*(login(gateway, password=f"guess {i}") for i in range(30)))
    assert sorted(a.status for a in answers) == [401] * 3 + [429] * 27
    assert len(checked) == 3  # the others were refused before their password was looked at
    metrics = await (await gateway.get("/metrics")).text()
    assert 'complaint_gateway_inbox_logins_total{result="failed"} 3.0' in metrics
    assert 'complaint_gateway_inbox_logins_total{result="locked"} 27.0' in metrics


async def test_a_successful_login_clears_the_failures(gateway):
    for _ in range(2):
        assert (await login(gateway, password="wrong password")).status == 401
    assert (await login(gateway)).status == 303
    for _ in range(2):  # counting starts again: two more failures do not lock
        assert (await login(gateway, password="wrong password")).status == 401
    assert (await login(gateway)).status == 303
    assert 'complaint_gateway_inbox_logins_total{result="ok"} 2.0' in await (await gateway.get("/metrics")).text()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_every_process_sharing_the_registry_counts_the_same_failures_and_a_restart_keeps_them(
        backend, make_config, start_gateway, redis_url):
    config = make_config(backend=backend, inbox=inbox_section(lockout={"attempts": 3, "window_seconds": 600,
                                                                       "duration_seconds": 900}))
    first, second = await start_gateway(config), await start_gateway(config)  # two workers on one registry
    for client in (first, second, first):
        assert (await login(client, password="wrong password")).status == 401
    assert (await login(second)).status == 429
    await second.close()
    restarted = await start_gateway(config)
    assert (await login(restarted)).status == 429


async def test_login_is_refused_when_the_registry_cannot_count_attempts(gateway, monkeypatch, caplog):
    async def unavailable(*args: object) -> float:
        raise RegistryError("redis attempts: Connection refused")

    monkeypatch.setattr(registry_of(gateway), "count_attempt", unavailable)
    checked: list[str] = []
    monkeypatch.setattr(auth, "_verify", lambda password_hash, password: checked.append(password) or True)
    resp = await login(gateway)
    assert resp.status == 503 and "Вход сейчас невозможен. Повторите через минуту." in await resp.text()
    assert checked == []
    assert "the registry cannot count attempts" in caplog.text
    assert 'complaint_gateway_inbox_logins_total{result="unavailable"} 1.0' in await (await gateway.get("/metrics")).text()


async def test_forms_and_session_api_calls_without_the_csrf_token_are_refused(gateway):
    no_token = await gateway.post("/inbox/login", data={"username": "anna", "password": PASSWORD})
    assert no_token.status == 403
    assert (await gateway.get("/inbox/", allow_redirects=False)).status == 303  # not logged in
    await login(gateway)
    receipt = await submit_web(gateway)
    registry = registry_of(gateway)
    path = f"/inbox/complaints/{receipt['id']}/claim"
    forged = await gateway.post(path, data={"csrf_token": "forged"}, allow_redirects=False)
    assert forged.status == 403
    api = await gateway.post(f"/inbox/api/complaints/{receipt['id']}/actions", json={"action": "claim"})
    assert api.status == 403
    assert await registry.actions(receipt["registration_number"]) == []

    token = await page_csrf(gateway)
    ok = await gateway.post(path, data={"csrf_token": token}, allow_redirects=False)
    assert ok.status == 303
    ok_api = await gateway.post(f"/inbox/api/complaints/{receipt['id']}/actions", json={"action": "note", "text": "позвонить"},
                                headers={"X-CSRF-Token": await api_csrf(gateway)})
    assert ok_api.status == 201
    assert [a["action"] for a in await registry.actions(receipt["registration_number"])] == ["claim", "note"]


async def test_bearer_token_opens_the_api_and_acts_as_the_machine(gateway):
    receipt = await submit_web(gateway)
    listed = await gateway.get("/inbox/api/complaints", headers=BEARER)
    assert listed.status == 200
    assert [row["complaint"]["id"] for row in (await listed.json())["items"]] == [receipt["id"]]
    acted = await gateway.post(f"/inbox/api/complaints/{receipt['id']}/actions", json={"action": "claim"}, headers=BEARER)
    assert acted.status == 201
    assert (await acted.json())["operator"] == "api:crm"
    wrong = await gateway.get("/inbox/api/complaints", headers={"Authorization": "Bearer " + API_TOKEN[:-1] + "y"})
    assert wrong.status == 401
    basic = await gateway.get("/inbox/api/complaints", headers={"Authorization": "Basic YW5uYTpwdw=="})
    assert basic.status == 401
    pages = await gateway.get("/inbox/", headers=BEARER, allow_redirects=False)
    assert pages.status == 303  # tokens are for the API, not for the pages


async def test_every_page_sends_a_strict_content_security_policy(gateway):
    login_page = await gateway.get("/inbox/login")
    await login(gateway)
    for resp in (login_page, await gateway.get("/inbox/"), await gateway.get("/inbox/dead-letters"),
                 await gateway.get("/inbox/api/me"), await gateway.get("/inbox/nowhere")):
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
    html = await (await gateway.get("/inbox/")).text()
    assert "<script>" not in html and " style=" not in html and "onclick" not in html


async def test_login_never_redirects_to_another_site(gateway):
    page = await gateway.get("/inbox/login")
    resp = await gateway.post("/inbox/login", data={"username": "anna", "password": PASSWORD, "next": "//evil.example/x",
                                                    "csrf_token": csrf_of(await page.text())}, allow_redirects=False)
    assert resp.headers["Location"] == "/inbox/"


async def test_language_follows_the_operator_then_the_browser(gateway):
    assert "Logowanie do skrzynki" in await (await gateway.get("/inbox/login", headers={"Accept-Language": "pl-PL,pl;q=0.9"})).text()
    assert "Вход в журнал обращений" in await (await gateway.get("/inbox/login", headers={"Accept-Language": "ru"})).text()
    assert "Log in to the complaint inbox" in await (await gateway.get("/inbox/login", headers={"Accept-Language": "de, en;q=0.5"})).text()
    await login(gateway, username="piotr")
    html = await (await gateway.get("/inbox/", headers={"Accept-Language": "ru"})).text()
    assert 'lang="pl"' in html and "Wszystkie reklamacje" in html


async def test_removed_operator_loses_the_session(make_config, start_gateway):
    config = make_config(inbox=inbox_section())
    first = await start_gateway(config)
    await login(first)
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/inbox/"))["cg_inbox"].value
    fewer = make_config(inbox=inbox_section(operators=[o for o in inbox_section()["operators"] if o["username"] != "anna"]))
    second = await start_gateway(fewer)
    resp = await second.get("/inbox/", headers={"Cookie": f"cg_inbox={cookie}"}, allow_redirects=False)
    assert resp.status == 303


@pytest.mark.parametrize("section, message", [
    ({"secret_key": None}, "inbox.secret_key"),
    ({"secret_key": "not-a-fernet-key-but-long-enough-to-pass-the-length-check"}, "not a Fernet key"),
    ({"operators": [{"username": "anna", "password_hash": "plain-text"}]}, "inbox.operators.0.password_hash"),
    ({"lockout": {"attempts": 0}}, "inbox.lockout.attempts"),
    ({"colour": "blue"}, "Additional properties are not allowed ('colour'"),
    ({"users_file": "missing.yaml"}, "inbox.users_file: cannot read"),
])
def test_configuration_mistakes_fail_at_start_up(make_config, section, message):
    config = make_config(inbox={k: v for k, v in inbox_section(**section).items() if v is not None})
    with pytest.raises(ConfigError) as error:
        create_app(config)
    assert message in str(error.value)


async def test_operators_can_come_from_a_users_file(make_config, start_gateway, tmp_path):
    users = tmp_path / "operators.yaml"
    users.write_text(f"- username: zofia\n  password_hash: '{PasswordHasher().hash('zofia-password-1')}'\n  name: Zofia\n",
                     encoding="utf-8")
    client = await start_gateway(make_config(inbox=inbox_section(operators=[], users_file=str(users))))
    assert (await login(client, "zofia", "zofia-password-1")).status == 303
    assert "Zofia" in await (await client.get("/inbox/")).text()


def test_hash_password_command_prints_a_verifiable_argon2_hash():
    result = subprocess.run([sys.executable, "-m", "gateway.inbox", "hash-password", "--stdin"], input="s3cret-passw0rd\n",
                            capture_output=True, text=True, timeout=60, check=True)
    digest = result.stdout.strip()
    assert digest.startswith("$argon2id$") and PasswordHasher().verify(digest, "s3cret-passw0rd")
    short = subprocess.run([sys.executable, "-m", "gateway.inbox", "hash-password", "--stdin"], input="short\n",
                           capture_output=True, text=True, timeout=60, check=False)
    assert short.returncode == 1 and "at least 12" in short.stderr
