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

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.inbox.settings import ApiToken, Operator
from gateway.registry.base import Registry

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


class LoginThrottle:
    """Locks a key (a client address, a user name) for ``duration`` seconds after
    ``attempts`` logins within ``window`` seconds, counted in the registry: every process
    of ``http.workers`` and every machine sharing the registry counts together, and a
    restart forgets nothing. An attempt is counted before its password is checked, so
    guesses sent at once cannot pass the check together: the ``attempts``-th locks the key
    and those after it are refused unchecked. A login that succeeds clears its keys."""

    def __init__(self, registry: Registry, attempts: int, window: float, duration: float) -> None:
        self.registry = registry
        self.attempts = attempts
        self.window = window
        self.duration = duration

    async def attempt(self, keys: tuple[str, ...]) -> float:
        """Count one login attempt under each key in turn: 0 when it may go ahead, else the
        seconds the lock of the first locked key still lasts (the keys after it are not
        counted: a locked address does not use up the attempts of the user names it tries).
        ``RegistryError`` when the registry cannot count."""
        for key in keys:
            left = await self.registry.count_attempt("login:" + key, self.attempts, self.window, self.duration)
            if left > 0:
                return left
        return 0.0

    async def success(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            await self.registry.clear_attempts("login:" + key)


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
