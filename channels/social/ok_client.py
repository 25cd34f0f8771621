"""The OK (Odnoklassniki) Bot API for groups, over aiohttp: messages to a chat and the
webhook subscription (subscribe, unsubscribe, subscriptions). There is no maintained
Python client; the wire format is small and documented at apiok.ru (graph_api)."""
from __future__ import annotations

from typing import Any

import aiohttp

from gateway.outbound import proxy_arguments

OK_API_URL = "https://api.ok.ru/graph"


class OkApiError(Exception):
    """OK answered with ``error_code``/``error_msg`` (it does so with HTTP 200)."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(f"OK API error {code}: {message}")
        self.code = code


class OkClient:
    """Calls ``<api_base_url>/me/...?access_token=...`` with JSON bodies."""

    def __init__(self, session: aiohttp.ClientSession, token: str, api_base_url: str = OK_API_URL,
                 timeout: float = 10.0) -> None:
        self.session = session
        self.token = token
        self.base = api_base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.session.request(
            method, f"{self.base}/{path}", params={"access_token": self.token}, json=body, timeout=self.timeout,
            headers={"Content-Type": "application/json;charset=utf-8"} if body is not None else None,
            **proxy_arguments(self.base),
        ) as resp:
            if resp.status >= 400:  # not raise_for_status: its error carries the URL, and the URL the token
                raise OkApiError(None, f"HTTP {resp.status}")
            data = await resp.json(content_type=None)
        if not isinstance(data, dict):
            raise OkApiError(None, "unexpected answer")
        if data.get("error_code") is not None:
            code = data["error_code"]
            raise OkApiError(int(code) if str(code).isdigit() else code, str(data.get("error_msg") or ""))
        return data

    async def send_message(self, chat_id: str, text: str) -> dict[str, Any]:
        """POST me/messages/<chat_id>: a text message to one of the group's chats."""
        return await self._call("POST", f"me/messages/{chat_id}", {"recipient": {"chat_id": chat_id}, "message": {"text": text}})

    async def subscribe(self, url: str) -> dict[str, Any]:
        return await self._call("POST", "me/subscribe", {"url": url})

    async def unsubscribe(self, url: str) -> dict[str, Any]:
        return await self._call("POST", "me/unsubscribe", {"url": url})

    async def subscriptions(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "me/subscriptions")
        return [s for s in data.get("subscriptions") or [] if isinstance(s, dict)]
