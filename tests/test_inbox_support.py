"""Helpers shared by the inbox tests: an inbox section with two operators and a machine
token, logging in over real HTTP, crafting complaints, and checking API answers against
the OpenAPI description."""
from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import yaml
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from gateway.inbox.api import spec_text
from gateway.inbox.auth import hash_password
from normalizer.schema import Complaint, Customer, Identity

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD)
SECRET_KEY = Fernet.generate_key().decode()
API_TOKEN = "machine-token-" + "x" * 30
OPERATORS = [
    {"username": "anna", "password_hash": PASSWORD_HASH, "name": "Anna Operator", "language": "en"},
    {"username": "piotr", "password_hash": PASSWORD_HASH, "name": "Piotr Nowak", "language": "pl"},
    {"username": "olga", "password_hash": PASSWORD_HASH, "name": "Ольга"},
]
SPEC = yaml.safe_load(spec_text())


def inbox_section(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "secret_key": SECRET_KEY, "cookie_secure": False, "operators": OPERATORS,
        "api_tokens": [{"name": "crm", "token_sha256": hashlib.sha256(API_TOKEN.encode()).hexdigest()}],
        "live": {"poll_interval_seconds": 0.05, "heartbeat_seconds": 5},
    }
    section.update(overrides)
    return section


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


async def login(client: TestClient, username: str = "anna", password: str = PASSWORD) -> ClientResponse:
    page = await client.get("/inbox/login")
    token = csrf_of(await page.text())
    return await client.post("/inbox/login", data={"username": username, "password": password, "csrf_token": token,
                                                   "next": "/inbox/"}, allow_redirects=False)


async def page_csrf(client: TestClient, path: str = "/inbox/") -> str:
    return csrf_of(await (await client.get(path)).text())


async def api_csrf(client: TestClient) -> str:
    return (await (await client.get("/inbox/api/me")).json())["csrf_token"]


BEARER = {"Authorization": f"Bearer {API_TOKEN}"}

WEB_COMPLAINT = {"name": "Иван Петров", "email": "ivan@example.com", "phone": "+7 916 123-45-67",
                 "text": "Третий день нет интернета, роутер мигает красным."}


async def submit_web(client: TestClient, **fields: str) -> dict[str, Any]:
    resp = await client.post("/web/complaints", json={**WEB_COMPLAINT, **fields})
    assert resp.status == 201, await resp.text()
    return await resp.json()


def complaint(channel: str = "web", *, text: str = "Не работает интернет уже неделю.", email: str | None = None,
              urgency: str = "normal", language: str = "ru", received: datetime | None = None,
              deadlines: dict[str, str] | None = None, name: str | None = "Клиент") -> Complaint:
    """A normalised complaint built directly, for registry.submit()."""
    received = received or datetime.now(UTC)
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    return Complaint(
        id=uuid.uuid4().hex, channel=channel, channel_message_id=uuid.uuid4().hex,
        received_at=received.isoformat().replace("+00:00", "Z"),
        customer=Customer(name=name, identities=[Identity("email", email)]), text=text, urgency=urgency,  # type: ignore[arg-type]
        language=language, reply_to=Identity("email", email),
        deadlines=deadlines if deadlines is not None else {
            "acknowledge": (received + timedelta(hours=8)).isoformat().replace("+00:00", "Z")})


# -- the OpenAPI description as a test oracle -------------------------------------------
def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]]:
    for template, item in SPEC["paths"].items():
        if _template_regex(template).match(path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI description")


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """The answer must be declared for the operation and match its schema."""
    template, operation = operation_for(method, path)
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not declared"
    response = responses[str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**SPEC, **schema}, cls=jsonschema.Draft202012Validator)


async def api(client: TestClient, method: str, path: str, *, expect: int, **kwargs: Any) -> Any:
    """Call the API, assert the status, check the body against the description, return it."""
    resp = await client.request(method, path, **kwargs)
    body = await resp.json()
    assert resp.status == expect, (resp.status, body)
    validate_response(method, path.split("?")[0], resp.status, body)
    return body
