"""What the phone doors share: the caller's identities, the Inbound of a call, and
default webhook paths that do not collide when a door runs as several instances."""
from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from gateway.inbound import Inbound
from normalizer.steps.identities import normalize_identity

if TYPE_CHECKING:
    from gateway.adapters import AdapterContext

#: What carriers and Twilio put in ``From`` when the caller withheld the number; the
#: numeric ones spell ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE on a keypad.
#: Such a caller must never become one shared "customer".
ANONYMOUS_CALLER_IDS = frozenset({
    "+266696687", "266696687", "+7378742833", "+2562533", "+8656696", "+86282452253",
    "anonymous", "restricted", "blocked", "unknown", "unavailable", "private", "withheld", "",
})

#: The identity kind that ties the messages of one call together when the caller has no
#: usable number (its follow-ups must reach the same customer to attach to the complaint).
CALL_IDENTITY = "call"

_ID = re.compile(r"^[0-9A-Za-z_.:\-]{1,128}$")


def region_of(context: AdapterContext, settings: dict[str, Any]) -> str:
    return str(settings.get("default_region") or context.config.section("normalizer").get("default_region", "RU"))


def caller_number(raw: str | None, region: str) -> str | None:
    """The caller's number in E.164, or None for a withheld or unusable caller id."""
    value = (raw or "").strip()
    if value.lower() in ANONYMOUS_CALLER_IDS:
        return None
    identity = normalize_identity("phone", value, region)
    return identity.value if identity is not None else None


def call_identities(instance: str, call_id: str, caller: str | None, account: str | None) -> list[tuple[str, str]]:
    """``phone`` (and ``account``) when known; a per-call identity when the caller is
    anonymous, so that the transcription of the same call still finds its complaint."""
    identities: list[tuple[str, str]] = []
    if caller:
        identities.append(("phone", caller))
    if account:
        identities.append(("account", account))
    if not caller:
        identities.append((CALL_IDENTITY, call_identity_value(instance, call_id)))
    return identities


def call_identity_value(instance: str, call_id: str) -> str:
    value = f"{instance}:{call_id}"
    return value if _ID.match(value) else "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]


def call_inbound(
    *, instance: str, call_id: str, caller: str | None, called: str | None, language: str, account: str | None,
    urgent: bool, subject: str, text: str, raw: dict[str, Any], meta: dict[str, Any],
) -> Inbound:
    """The complaint of one call. Its id is the call's id, so every callback of the call
    may deliver it and all get the same receipt (the first one registers it)."""
    return Inbound(
        channel=instance,
        message_id=f"call:{call_id}",
        identities=call_identities(instance, call_id, caller, account),
        subject=subject,
        text=text,
        raw=json.dumps(raw, ensure_ascii=False, sort_keys=True).encode("utf-8"),
        raw_content_type="application/json",
        language=language,
        urgency="immediate" if urgent else None,
        meta={"call_id": call_id, "called": called, "caller_withheld": caller is None, **meta},
    )


def call_follow_up(base: Inbound, *, message_id: str, registration_number: str | None, text: str | None = None,
                   raw: dict[str, Any], meta: dict[str, Any]) -> Inbound:
    """A later part of the same call (transcription, downloaded recording): the same
    customer identities and ``in_reply_to`` the call's registration number."""
    return Inbound(
        channel=base.channel,
        message_id=message_id,
        identities=list(base.identities),
        text=text,
        raw=json.dumps(raw, ensure_ascii=False, sort_keys=True).encode("utf-8"),
        raw_content_type="application/json",
        language=base.language,
        in_reply_to=registration_number,
        meta={"call_id": base.meta.get("call_id"), **meta},
    )


def default_path(context: AdapterContext, adapter_name: str, base: str) -> str:
    """``base`` for the first enabled instance of ``adapter_name`` in config.yaml that
    leaves ``path`` unset; ``base/<instance>`` for every later one."""
    unset = [name for name, section in context.config.enabled_channels().items()
             if section.get("adapter") == adapter_name and not section.get("path")]
    if not unset or unset[0] == context.instance:
        return base
    return f"{base}/{context.instance}"
