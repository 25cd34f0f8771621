"""A fake of the parts of the Twilio REST API the phone doors use, served over real HTTP
on 127.0.0.1 (port 0): recordings and MMS media downloads, the Call resource, and sending
messages. It checks HTTP Basic credentials as Twilio does and records every request.

    api = FakeTwilioApi(account_sid, auth_token)
    base_url = await api.start()          # point ``api_base_url`` of a channel here
    api.add_recording("RE...")            # a small WAV
    ...
    await api.close()
"""
from __future__ import annotations

import base64
import io
import math
import secrets
import struct
import wave
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API = "/2010-04-01/Accounts/{account}"


def new_sid(prefix: str) -> str:
    """A random Twilio-style SID: two letters and 32 hex digits (``CA...``, ``RE...``)."""
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature of a form POST to ``url``, computed as Twilio does."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


async def post_signed(session: aiohttp.ClientSession, url: str, params: dict[str, str], auth_token: str,
                      signed_url: str | None = None) -> tuple[int, str]:
    """POST a webhook form to ``url`` as Twilio does, signed for ``signed_url`` (the
    public URL Twilio would see; ``url`` itself by default). Returns status and body."""
    headers = {"X-Twilio-Signature": twilio_signature(auth_token, signed_url or url, params)}
    async with session.post(url, data=params, headers=headers) as response:
        return response.status, await response.text()


def wav_bytes(seconds: float = 0.25, rate: int = 8000, tone_hz: float = 440.0) -> bytes:
    """A small mono 16-bit PCM WAV (Twilio's recording format) with a tone in it."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * tone_hz * i / rate)))
                          for i in range(int(seconds * rate)))
        out.writeframes(frames)
    return buffer.getvalue()


class FakeTwilioApi:
    """The fake server. ``requests`` lists ``(method, path)`` of every request;
    ``sent_messages`` the form fields of every message sent through it."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.recordings: dict[str, bytes] = {}
        self.media: dict[str, tuple[bytes, str]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.sent_messages: list[dict[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    # -- content ----------------------------------------------------------------------
    def add_recording(self, recording_sid: str, data: bytes | None = None) -> str:
        """Serve a recording; returns its RecordingUrl as Twilio gives it (no extension)."""
        self.recordings[recording_sid] = data if data is not None else wav_bytes()
        return f"https://api.twilio.com{API.format(account=self.account_sid)}/Recordings/{recording_sid}"

    def add_media(self, message_sid: str, data: bytes, content_type: str) -> str:
        """Serve an MMS media file; returns its MediaUrl as Twilio gives it."""
        media_sid = new_sid("ME")
        path = f"{API.format(account=self.account_sid)}/Messages/{message_sid}/Media/{media_sid}"
        self.media[path] = (data, content_type)
        return "https://api.twilio.com" + path

    def add_call(self, call_sid: str, from_: str, to: str) -> None:
        self.calls[call_sid] = {"sid": call_sid, "account_sid": self.account_sid, "from": from_, "to": to,
                                "status": "in-progress", "direction": "inbound"}

    # -- server -----------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(middlewares=[self._record_and_authenticate])
        api = API  # "{account}" is a route variable here
        app.router.add_get(api + "/Recordings/{name}", self._recording)
        app.router.add_get(api + "/Messages/{message}/Media/{media}", self._media)
        app.router.add_get("/cdn/{token}", self._cdn)
        app.router.add_get(api + "/Calls/{name}", self._call)
        app.router.add_post(api + "/Messages.json", self._send_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record_and_authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.path.startswith("/cdn/"):  # Twilio's media CDN links are pre-signed
            return await handler(request)
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected or request.match_info.get("account") != self.account_sid:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        return await handler(request)

    async def _recording(self, request: web.Request) -> web.Response:
        sid, _, ext = request.match_info["name"].partition(".")
        if sid not in self.recordings or ext not in ("wav", "mp3"):
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        return web.Response(body=self.recordings[sid], content_type="audio/x-wav" if ext == "wav" else "audio/mpeg")

    async def _media(self, request: web.Request) -> web.Response:
        if request.path not in self.media:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        token = base64.urlsafe_b64encode(request.path.encode()).decode()
        raise web.HTTPTemporaryRedirect(f"/cdn/{token}")

    async def _cdn(self, request: web.Request) -> web.Response:
        path = base64.urlsafe_b64decode(request.match_info["token"]).decode()
        data, content_type = self.media[path]
        return web.Response(body=data, content_type=content_type)

    async def _call(self, request: web.Request) -> web.Response:
        sid = request.match_info["name"].removesuffix(".json")
        if sid not in self.calls:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        return web.json_response(self.calls[sid])

    async def _send_message(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        fields = {k: str(v) for k, v in form.items()}
        if not fields.get("To") or not (fields.get("Body") or fields.get("MediaUrl")):
            return web.json_response({"code": 21602, "message": "Message body is required.", "status": 400}, status=400)
        sid = new_sid("SM")
        self.sent_messages.append(fields)
        return web.json_response({
            "sid": sid, "account_sid": self.account_sid, "to": fields["To"], "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"), "body": fields.get("Body"),
            "status": "queued", "direction": "outbound-api", "num_segments": "1", "num_media": "0",
            "api_version": "2010-04-01", "uri": f"{API.format(account=self.account_sid)}/Messages/{sid}.json",
        }, status=201)
