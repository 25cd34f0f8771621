"""Who may use the inbox: operators' passwords (argon2), login lockout, CSRF tokens and
machines' bearer tokens.

Passwords are checked off the event loop (argon2 is deliberately slow) and against a
dummy hash when the user is unknown, so timing does not tell which user names exist.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.inbox.settings import ApiToken, Operator

HASHER = PasswordHasher()
_DUMMY_HASH = HASHER.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def check_password(operator: Operator | None, password: str) -> bool:
    """True when ``password`` is the operator's; as slow for unknown users as for known ones."""
    ok = await asyncio.to_thread(_verify, operator.password_hash if operator else _DUMMY_HASH, password)
    return ok and operator is not None


@dataclass(slots=True)
class _Failures:
    times: deque[float]
    locked_until: float = 0.0


class LoginThrottle:
    """Locks a key (a user name, a client address) for ``duration`` seconds after
    ``attempts`` failures within ``window`` seconds. Memory is bounded by ``max_keys``."""

    def __init__(self, attempts: int, window: float, duration: float, max_keys: int = 50_000) -> None:
        self.attempts = attempts
        self.window = window
        self.duration = duration
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def locked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        entry = self._keys.get(key)
        return max(0.0, entry.locked_until - time.monotonic()) if entry else 0.0

    def failure(self, key: str) -> bool:
        """Count a failure; True when it locks the key."""
        now = time.monotonic()
        entry = self._keys.pop(key, None) or _Failures(deque())
        while entry.times and entry.times[0] <= now - self.window:
            entry.times.popleft()
        entry.times.append(now)
        locked = len(entry.times) >= self.attempts
        if locked:
            entry.locked_until = now + self.duration
            entry.times.clear()
        self._keys[key] = entry
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return locked

    def success(self, key: str) -> None:
        self._keys.pop(key, None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def match_api_token(tokens: list[ApiToken], authorization: str | None) -> ApiToken | None:
    """The configured token a ``Bearer`` header carries, compared in constant time."""
    if not authorization:
        return None
    scheme, _sep, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    digest = token_sha256(value.strip()).encode("ascii")
    found = None
    for token in tokens:  # look at every token so the time does not depend on which matched
        if hmac.compare_digest(digest, token.token_sha256.encode("ascii")):
            found = token
    return found
