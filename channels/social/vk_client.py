"""The VK API through the vk-api library: a community token, one API version, every call
in a worker thread (vk-api is synchronous), the API's address configurable."""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import requests
import vk_api
from jconfig.memory import MemoryConfig

#: Where vk-api sends method calls; ``api_base_url`` replaces this prefix.
VK_API_URL = "https://api.vk.ru/method/"


class _RoutedSession(requests.Session):
    """vk-api posts to a fixed address; this session sends those calls to ``base_url``
    (a proxy, or a fake VK in tests) and gives every request a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        """What the environment says for ``url`` (proxies, ``NO_PROXY``, a CA bundle), read
        once per scheme and host instead of on every call: requests scans every environment
        variable twice per request, a quarter of a VK call's CPU."""
        if proxies or stream is not None or verify is not None or cert is not None:  # given for this call: as requests does
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        origin = urlsplit(url)[:2]
        found = self._environment.get(origin)
        if found is None:
            found = self._environment[origin] = super().merge_environment_settings(url, {}, None, None, None)
        return {**found, "proxies": dict(found["proxies"])}

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = url.decode("utf-8") if isinstance(url, bytes) else url
        if url.startswith(VK_API_URL):
            url = self.base_url + url[len(VK_API_URL):]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class VkClient:
    """``await client.call("messages.send", peer_id=..., random_id=..., message=...)``."""

    def __init__(self, token: str, api_version: str, api_base_url: str = VK_API_URL, timeout: float = 10.0) -> None:
        self.session = _RoutedSession(api_base_url, timeout)
        self.api = vk_api.VkApiGroup(token=token, api_version=api_version, session=self.session, config=MemoryConfig)

    async def call(self, method: str, **params: Any) -> Any:
        """The method's ``response``; ``vk_api.ApiError`` carries VK's error code."""
        return await asyncio.to_thread(self.api.method, method, params)

    async def call_many(self, method: str, calls: list[dict[str, Any]]) -> list[Any]:
        """``method`` once per parameter set, up to 25 in one ``execute`` (vk-api's request
        pool: one of VK's 20 calls a second for all of them). Per call, its ``response``
        or the ``vk_api.ApiError`` VK reported for it; an ``execute`` that fails as a whole
        raises."""
        return await asyncio.to_thread(self._call_many, method, calls)

    def _call_many(self, method: str, calls: list[dict[str, Any]]) -> list[Any]:
        pool = vk_api.VkRequestsPool(self.api)
        results = [pool.method(method, values) for values in calls]
        pool.execute()
        return [result.result if result.ok else vk_api.ApiError(self.api, method, values, False, result.error)
                for result, values in zip(results, calls)]

    def close(self) -> None:
        self.session.close()
