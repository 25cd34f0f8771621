"""The ``inbox:`` section of config.yaml: its schema, its defaults and the operators.

Validated once at start-up (``gateway.config.validate``), so a wrong key, a missing
secret or an unreadable users file stops the gateway before it serves a single page.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from gateway.config import ConfigError, GatewayConfig, validate
from gateway.inbox.i18n import LANGUAGES
from gateway.registry.base import DEFAULT_SEARCH_SCAN_LIMIT

_OPERATOR = {
    "type": "object", "additionalProperties": False, "required": ["username", "password_hash"],
    "properties": {
        "username": {"type": "string", "pattern": r"^[A-Za-z0-9_.@-]{1,64}$"},
        "password_hash": {"type": "string", "pattern": r"^\$argon2(id|i|d)\$"},
        "name": {"type": "string"},
        "language": {"enum": list(LANGUAGES)},
    },
}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_COUNT = {"type": "integer", "minimum": 1}

INBOX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "secret_key": {"type": "string", "minLength": 44},
        "cookie_name": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
        "cookie_secure": {"type": "boolean"},
        "session_max_age_seconds": _COUNT,
        "default_language": {"enum": list(LANGUAGES)},
        "operators": {"type": "array", "items": _OPERATOR},
        "users_file": {"type": ["string", "null"]},
        "api_tokens": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "token_sha256"],
            "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"},
                           "token_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
        "lockout": {"type": "object", "additionalProperties": False, "properties": {
            "attempts": _COUNT, "window_seconds": _POSITIVE, "duration_seconds": _POSITIVE}},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 500},
        "count_scan_limit": {"type": "integer", "minimum": 1},
        "search_scan_limit": {"type": "integer", "minimum": 1},
        "max_reply_chars": _COUNT,
        "max_note_chars": _COUNT,
        "max_api_body_bytes": {"type": "integer", "minimum": 1024},
        "max_original_bytes": {"type": "integer", "minimum": 1024},
        "live": {"type": "object", "additionalProperties": False, "properties": {
            "consumer_group": {"type": "string", "minLength": 1},
            "poll_interval_seconds": _POSITIVE,
            "batch": _COUNT,
            "heartbeat_seconds": _POSITIVE,
            "max_clients": {"type": "integer", "minimum": 0},
            "client_buffer": _COUNT}},
    },
}


@dataclass(frozen=True, slots=True)
class Operator:
    """A person who may log in to the inbox."""

    username: str
    password_hash: str
    name: str
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A machine's bearer token; only its SHA-256 is configured."""

    name: str
    token_sha256: str


@dataclass(slots=True)
class InboxSettings:
    """The validated ``inbox:`` section with every default filled in."""

    secret_key: str
    operators: dict[str, Operator]
    api_tokens: list[ApiToken] = field(default_factory=list)
    cookie_name: str = "cg_inbox"
    cookie_secure: bool = True
    session_max_age: int = 8 * 3600
    default_language: str = "ru"
    lockout_attempts: int = 5
    lockout_window: float = 900.0
    lockout_duration: float = 900.0
    page_size: int = 50
    count_scan_limit: int = 1000
    search_scan_limit: int = DEFAULT_SEARCH_SCAN_LIMIT
    max_reply_chars: int = 10_000
    max_note_chars: int = 5_000
    max_api_body_bytes: int = 1024 * 1024
    max_original_bytes: int = 5 * 1024 * 1024
    consumer_group: str = ""
    poll_interval: float = 0.5
    batch: int = 100
    heartbeat: float = 15.0
    max_clients: int = 200
    client_buffer: int = 200


def enabled(config: GatewayConfig) -> bool:
    section = config.section("inbox")
    return bool(section) and bool(section.get("enabled", True))


def load_settings(config: GatewayConfig) -> InboxSettings:
    """Validate ``inbox:`` and read the users file; every mistake is a ConfigError."""
    section = config.section("inbox")
    validate(section, INBOX_SCHEMA, prefix="inbox")
    key = section.get("secret_key")
    if not key:
        raise ConfigError("inbox.secret_key: required (a Fernet key: complaint-gateway inbox new-secret-key)")
    try:
        Fernet(key)
    except (ValueError, TypeError) as exc:
        raise ConfigError("inbox.secret_key: not a Fernet key (32 url-safe base64-encoded bytes)") from exc
    operators = [_operator(o) for o in section.get("operators") or []]
    if section.get("users_file"):
        operators += _users_file(config.resolve(section["users_file"]))
    by_name: dict[str, Operator] = {}
    for operator in operators:
        if operator.username in by_name:
            raise ConfigError(f"inbox.operators: username {operator.username!r} is defined twice")
        by_name[operator.username] = operator
    lockout = section.get("lockout") or {}
    live = section.get("live") or {}
    d = InboxSettings(secret_key="", operators={})
    return InboxSettings(
        secret_key=key,
        operators=by_name,
        api_tokens=[ApiToken(t["name"], t["token_sha256"]) for t in section.get("api_tokens") or []],
        cookie_name=section.get("cookie_name", d.cookie_name),
        cookie_secure=bool(section.get("cookie_secure", d.cookie_secure)),
        session_max_age=int(section.get("session_max_age_seconds", d.session_max_age)),
        default_language=section.get("default_language")
        or config.section("normalizer").get("default_language", d.default_language),
        lockout_attempts=int(lockout.get("attempts", d.lockout_attempts)),
        lockout_window=float(lockout.get("window_seconds", d.lockout_window)),
        lockout_duration=float(lockout.get("duration_seconds", d.lockout_duration)),
        page_size=int(section.get("page_size", d.page_size)),
        count_scan_limit=int(section.get("count_scan_limit", d.count_scan_limit)),
        search_scan_limit=int(section.get("search_scan_limit", d.search_scan_limit)),
        max_reply_chars=int(section.get("max_reply_chars", d.max_reply_chars)),
        max_note_chars=int(section.get("max_note_chars", d.max_note_chars)),
        max_api_body_bytes=int(section.get("max_api_body_bytes", d.max_api_body_bytes)),
        max_original_bytes=int(section.get("max_original_bytes", d.max_original_bytes)),
        consumer_group=live.get("consumer_group") or f"inbox-{socket.gethostname()}-{os.getpid()}",
        poll_interval=float(live.get("poll_interval_seconds", d.poll_interval)),
        batch=int(live.get("batch", d.batch)),
        heartbeat=float(live.get("heartbeat_seconds", d.heartbeat)),
        max_clients=int(live.get("max_clients", d.max_clients)),
        client_buffer=int(live.get("client_buffer", d.client_buffer)),
    )


def _operator(data: dict[str, Any]) -> Operator:
    return Operator(username=data["username"], password_hash=data["password_hash"],
                    name=data.get("name") or data["username"], language=data.get("language"))


def _users_file(path: Path) -> list[Operator]:
    """A YAML file holding a list of operators, in the same shape as ``inbox.operators``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except OSError as exc:
        raise ConfigError(f"inbox.users_file: cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"inbox.users_file: {path} is not valid YAML: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("operators") or []
    validate({"operators": data}, {"type": "object", "properties": {"operators": {"type": "array", "items": _OPERATOR}}},
             prefix=f"inbox.users_file({path.name})")
    return [_operator(o) for o in data]
