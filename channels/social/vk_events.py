"""VK group events (Callback API and Bots Long Poll share one shape) read into what a
complaint needs: who wrote, what, which files, and where to answer.

Handles the shapes of API 5.103+ (``message_new`` with ``object.message`` and
``object.client_info``) and the older flat ``message_new`` object.
"""
from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from typing import Any

from channels.social.common import WantedFile

#: Events that can carry a complaint.
COMPLAINT_EVENTS = ("message_new", "wall_reply_new", "board_post_new", "wall_post_new")
#: Peer ids from this value up are multi-user chats, not a customer's private dialogue.
CHAT_PEER_OFFSET = 2_000_000_000
#: VK ``lang_id`` (client_info) to language code, for the languages we answer in and their neighbours.
LANG_IDS = {0: "ru", 1: "uk", 2: "be", 3: "en", 4: "es", 6: "de", 7: "it", 15: "pl", 16: "fr"}
#: Photo size letters, largest first (used when sizes carry no dimensions).
PHOTO_SIZE_ORDER = "wzyxrqpoms"


class EventIgnored(Exception):
    """The event is valid but is not a complaint (a chat message, the group's own comment ...)."""


@dataclass(slots=True)
class VkEvent:
    """One complaint-bearing event, platform details already read."""

    kind: str
    user_id: int
    text: str
    public: bool
    files: list[WantedFile] = field(default_factory=list)
    unsupported_attachments: list[str] = field(default_factory=list)
    quoted_text: str | None = None
    language: str | None = None
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def event_key(event: dict[str, Any]) -> str:
    """The idempotency key of an event: VK's ``event_id``, or for API versions without
    it, the ids of the object the event is about."""
    event_id = event.get("event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    obj = event.get("object") or {}
    message = obj.get("message", obj) if isinstance(obj, dict) else {}
    ids = [str(event.get("type"))] + [str(message.get(k)) for k in ("peer_id", "owner_id", "post_id", "topic_id", "id")
                                      if isinstance(message, dict) and message.get(k) is not None]
    return ":".join(ids)


def parse_event(event: dict[str, Any], group_id: int) -> VkEvent:
    """Read one event. Raises ``EventIgnored`` for events that are no complaint, and
    ``KeyError``/``TypeError``/``ValueError`` for a shape we do not know."""
    kind = event.get("type")
    obj = event.get("object")
    if kind not in COMPLAINT_EVENTS:
        raise EventIgnored(f"event type {kind!r} is not handled")
    if not isinstance(obj, dict):
        raise TypeError("event object is not a JSON object")
    if kind == "message_new":
        return _message_new(obj, group_id)
    if kind == "wall_reply_new":
        return _wall_reply(obj, group_id)
    if kind == "board_post_new":
        return _board_post(obj, group_id)
    return _suggested_post(obj, group_id)


def _author(value: Any) -> int:
    user_id = int(value)
    if user_id <= 0:  # a community (often this group itself answering): never a customer
        raise EventIgnored("written by a community")
    return user_id


def _message_new(obj: dict[str, Any], group_id: int) -> VkEvent:
    message = obj.get("message", obj)
    client_info = obj.get("client_info") if "message" in obj else None
    user_id = _author(message["from_id"])
    peer_id = int(message.get("peer_id", user_id))
    if peer_id >= CHAT_PEER_OFFSET:
        raise EventIgnored("a message in a multi-user chat")
    files, unsupported = attachments_of(message.get("attachments") or [])
    reply = message.get("reply_message") or {}
    quoted = reply.get("text") if isinstance(reply, dict) and int(reply.get("from_id", 0) or 0) == -group_id else None
    language = None
    if isinstance(client_info, dict) and isinstance(client_info.get("lang_id"), int):
        language = LANG_IDS.get(client_info["lang_id"])
    return VkEvent(
        kind="message_new", user_id=user_id, text=str(message.get("text") or ""), public=False, files=files,
        unsupported_attachments=unsupported, quoted_text=quoted, language=language,
        meta={"vk_event": "message_new", "vk_group_id": group_id, "vk_peer_id": peer_id,
              "vk_message_id": message.get("id"), "vk_conversation_message_id": message.get("conversation_message_id")},
    )


def _wall_reply(obj: dict[str, Any], group_id: int) -> VkEvent:
    user_id = _author(obj["from_id"])
    files, unsupported = attachments_of(obj.get("attachments") or [])
    owner_id, post_id = int(obj["post_owner_id"]), int(obj["post_id"])
    return VkEvent(
        kind="wall_reply_new", user_id=user_id, text=str(obj.get("text") or ""), public=True, files=files,
        unsupported_attachments=unsupported, subject=f"VK wall comment (post {owner_id}_{post_id})",
        meta={"vk_event": "wall_reply_new", "vk_group_id": group_id, "vk_owner_id": owner_id, "vk_post_id": post_id,
              "vk_comment_id": int(obj["id"])},
    )


def _board_post(obj: dict[str, Any], group_id: int) -> VkEvent:
    user_id = _author(obj["from_id"])
    files, unsupported = attachments_of(obj.get("attachments") or [])
    topic_id = int(obj["topic_id"])
    return VkEvent(
        kind="board_post_new", user_id=user_id, text=str(obj.get("text") or ""), public=True, files=files,
        unsupported_attachments=unsupported, subject=f"VK board comment (topic {topic_id})",
        meta={"vk_event": "board_post_new", "vk_group_id": group_id, "vk_topic_id": topic_id,
              "vk_topic_owner_id": int(obj.get("topic_owner_id", -group_id)), "vk_comment_id": int(obj["id"])},
    )


def _suggested_post(obj: dict[str, Any], group_id: int) -> VkEvent:
    if obj.get("post_type") != "suggest":
        raise EventIgnored("a published wall post, not a suggested one")
    user_id = _author(obj.get("from_id") or obj.get("signer_id") or 0)
    files, unsupported = attachments_of(obj.get("attachments") or [])
    return VkEvent(
        kind="wall_post_new", user_id=user_id, text=str(obj.get("text") or ""), public=False, files=files,
        unsupported_attachments=unsupported, subject="VK suggested post",
        meta={"vk_event": "wall_post_new", "vk_group_id": group_id, "vk_peer_id": user_id,
              "vk_owner_id": int(obj.get("owner_id", -group_id)), "vk_post_id": obj.get("id")},
    )


def attachments_of(items: list[Any]) -> tuple[list[WantedFile], list[str]]:
    """Files to fetch (photos, documents, voice messages) and the types of the rest."""
    files: list[WantedFile] = []
    unsupported: list[str] = []
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        body = item.get(kind) if kind else None
        wanted = None
        if isinstance(body, dict):
            if kind == "photo":
                wanted = _photo(body)
            elif kind == "doc":
                wanted = _doc(body)
            elif kind == "audio_message":
                wanted = _voice(body)
        if wanted is None:
            unsupported.append(str(kind))
        else:
            files.append(wanted)
    return files, unsupported


def _photo(photo: dict[str, Any]) -> WantedFile | None:
    name = f"photo_{photo.get('owner_id')}_{photo.get('id')}.jpg"
    orig = photo.get("orig_photo")
    if isinstance(orig, dict) and orig.get("url"):
        return WantedFile(name, "image/jpeg", ref=orig["url"], url=orig["url"])
    sizes = [s for s in photo.get("sizes") or [] if isinstance(s, dict) and (s.get("url") or s.get("src"))]
    if not sizes:
        return None

    def rank(size: dict[str, Any]) -> tuple[int, int]:
        letter = str(size.get("type", ""))
        order = len(PHOTO_SIZE_ORDER) - PHOTO_SIZE_ORDER.index(letter) if letter and letter in PHOTO_SIZE_ORDER else 0
        return int(size.get("width") or 0) * int(size.get("height") or 0), order

    url = (best := max(sizes, key=rank)).get("url") or best["src"]
    return WantedFile(name, "image/jpeg", ref=url, url=url)


def _doc(doc: dict[str, Any]) -> WantedFile | None:
    url = doc.get("url")
    if not url:
        return None
    title = str(doc.get("title") or f"doc_{doc.get('id')}")
    ext = str(doc.get("ext") or "")
    if ext and not title.lower().endswith("." + ext.lower()):
        title = f"{title}.{ext}"
    size = doc.get("size")
    content_type = mimetypes.guess_type(title)[0] or "application/octet-stream"
    return WantedFile(title, content_type, ref=url, url=url,
                      size=int(size) if isinstance(size, int) else None)


def _voice(voice: dict[str, Any]) -> WantedFile | None:
    if voice.get("link_ogg"):
        return WantedFile(f"voice_{voice.get('id')}.ogg", "audio/ogg", ref=voice["link_ogg"], url=voice["link_ogg"])
    if voice.get("link_mp3"):
        return WantedFile(f"voice_{voice.get('id')}.mp3", "audio/mpeg", ref=voice["link_mp3"], url=voice["link_mp3"])
    return None

