"""What the Twilio voice and SMS doors share: signed webhook requests (X-Twilio-Signature,
also behind a reverse proxy), bounded downloads of recordings and media from the Twilio
API with the account's credentials, and a Twilio REST client whose API address can be
pointed elsewhere (a regional edge, a test double)."""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp import web
from multidict import MultiDict
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm
from twilio.rest import Client

from channels.phone.calls import default_path, region_of
from gateway.adapters import AdapterContext, PushAdapter
from gateway.http import BodyTooLarge, read_body
from gateway.outbound import proxy_arguments

TWILIO_API = "https://api.twilio.com"
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")

#: Settings both Twilio adapters accept (merged into each adapter's ``settings_schema``).
TWILIO_SETTINGS: dict[str, Any] = {
    "path": {"type": "string", "pattern": "^/"},
    "public_base_url": {"type": ["string", "null"], "pattern": "^https?://"},
    "account_sid": {"type": "string", "pattern": ACCOUNT_SID.pattern},
    "auth_token": {"type": "string", "minLength": 1},
    "api_base_url": {"type": "string", "pattern": "^https?://"},
    "max_body_bytes": {"type": "integer", "minimum": 1024},
    "download_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
    "default_region": {"type": "string"},
}

#: The raw body of a verified request (the original kept in the blob store).
RAW_BODY = web.RequestKey("twilio_raw_body", bytes)

Handler = Callable[[web.Request, MultiDict[str]], Awaitable[web.StreamResponse]]


class WebhookRejected(Exception):
    """A request refused at the door, with its HTTP status and the metric's reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class DownloadFailed(Exception):
    """A recording or media file could not be fetched from Twilio (kept as a link instead)."""


class ApiBaseHttpClient(AsyncTwilioHttpClient):
    """The twilio library's aiohttp client, sending requests for ``*.twilio.com`` to
    ``api_base_url`` instead (the library has no base-URL option of its own), through the
    environment's proxy for that address (the library's ``proxy_url`` is never passed on)."""

    def __init__(self, api_base_url: str, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout, pool_connections=False)
        self.api_base_url = api_base_url.rstrip("/")
        self.session = aiohttp.ClientSession(**proxy_arguments(self.api_base_url))

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> TwilioResponse:
        parts = urlsplit(url)
        if self.api_base_url != TWILIO_API and (parts.hostname or "").endswith("twilio.com"):
            url = self.api_base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        headers = dict(headers or {})
        if auth is not None:  # as a header: aiohttp's ``auth=`` is deprecated
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        return await super().request(method, url, params=params, data=data, headers=headers, timeout=timeout,
                                     allow_redirects=allow_redirects)


class TwilioAdapter(PushAdapter):
    """Base of the Twilio doors: every request is checked against X-Twilio-Signature
    before it is read further; forged ones get 403 and the metric ``forged``."""

    default_path_base: str = ""

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.path = (s.get("path") or default_path(context, self.name, self.default_path_base)).rstrip("/")
        self.public_base_url = (s.get("public_base_url") or context.config.http.get("public_base_url") or "").rstrip("/")
        self.account_sid = s.get("account_sid")
        self.validator = RequestValidator(str(s["auth_token"]))
        self.api_base_url = str(s.get("api_base_url", TWILIO_API)).rstrip("/")
        self.max_body = int(s.get("max_body_bytes", 64 * 1024))
        self.download_timeout = float(s.get("download_timeout_seconds", 10))
        self.region = region_of(context, s)
        self._session: aiohttp.ClientSession | None = None
        self._rest: Client | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.download_timeout))
        self.log.info("twilio webhook ready", extra={"channel": self.instance, "path": self.path})

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()
        if self._rest is not None and isinstance(self._rest.http_client, AsyncTwilioHttpClient):
            await self._rest.http_client.close()

    # -- requests ---------------------------------------------------------------------
    def public_url(self, request: web.Request) -> str:
        """The URL Twilio requested, as Twilio saw it (the signature covers it)."""
        base = self.public_base_url or f"{request.scheme}://{request.host}"
        return base + request.raw_path

    def url(self, suffix: str, query: dict[str, str] | None = None) -> str:
        """A URL of this door for TwiML: absolute under the public base URL when one is
        configured, else relative (Twilio resolves it against the current request)."""
        path = self.path + suffix
        query_string = urlencode({k: v for k, v in (query or {}).items() if v not in (None, "")})
        return (self.public_base_url + path if self.public_base_url else path) + (f"?{query_string}" if query_string else "")

    async def signed_params(self, request: web.Request) -> MultiDict[str]:
        """The form parameters of a request Twilio signed, or ``WebhookRejected``."""
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge as exc:
            raise WebhookRejected(413, "too_large", "request body too large") from exc
        if request.content_type not in ("application/x-www-form-urlencoded", ""):
            raise WebhookRejected(400, "malformed", f"unsupported content type {request.content_type!r}")
        try:
            params = MultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                                         encoding="utf-8", errors="strict", max_num_fields=500))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookRejected(400, "malformed", f"not a valid form body: {type(exc).__name__}") from exc
        request[RAW_BODY] = body
        signature = request.headers.get(SIGNATURE_HEADER, "")
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        if not signature or not self.validator.validate(self.public_url(request), params, signature, algorithm):
            raise WebhookRejected(403, "forged", "invalid X-Twilio-Signature")
        if self.account_sid and params.get("AccountSid", self.account_sid) != self.account_sid:
            raise WebhookRejected(403, "wrong_account", "request for another Twilio account")
        return params

    def guarded(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a handler: verified parameters in, refusals counted and logged."""
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                params = await self.signed_params(request)
                return await handler(request, params)
            except WebhookRejected as exc:
                self.context.metrics.rejected.labels(self.instance, exc.reason).inc()
                log = self.log.warning if exc.reason in ("forged", "wrong_account") else self.log.info
                log("request refused", extra={"channel": self.instance, "reason": exc.reason, "detail": str(exc),
                                              "path": request.path})
                return web.Response(status=exc.status, text=exc.reason)

        return handle

    @staticmethod
    def twiml(document: Any) -> web.Response:
        return web.Response(text=str(document), content_type="application/xml", charset="utf-8")

    # -- Twilio API -------------------------------------------------------------------
    async def download(self, api_path: str, max_bytes: int) -> tuple[bytes, str]:
        """GET ``api_path`` from the Twilio API with the account's credentials; the body
        (at most ``max_bytes``) and its content type. Only paths of this API are fetched,
        never a URL taken from a request, so a request cannot make the gateway fetch
        anything else."""
        if self._session is None:
            raise DownloadFailed("the channel is not started")
        # aiohttp drops the header when Twilio redirects to its media CDN (another origin)
        headers = {"Authorization": aiohttp.encode_basic_auth(self.account_sid, self.settings["auth_token"])} \
            if self.account_sid else {}
        try:
            async with self._session.get(self.api_base_url + api_path, headers=headers,
                                         **proxy_arguments(self.api_base_url)) as response:
                if response.status != 200:
                    raise DownloadFailed(f"HTTP {response.status}")
                if response.content_length is not None and response.content_length > max_bytes:
                    raise DownloadFailed(f"larger than {max_bytes} bytes")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_bytes:
                        raise DownloadFailed(f"larger than {max_bytes} bytes")
                return bytes(data), response.content_type or "application/octet-stream"
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadFailed(f"{type(exc).__name__}: {exc}") from exc

    def rest_client(self) -> Client:
        """The twilio REST client (async transport) for this account."""
        if self._rest is None:
            if not self.account_sid:
                raise RuntimeError(f"channel {self.instance!r}: account_sid is needed for the Twilio REST API")
            self._rest = Client(self.account_sid, self.settings["auth_token"],
                                http_client=ApiBaseHttpClient(self.api_base_url, timeout=self.download_timeout))
        return self._rest
