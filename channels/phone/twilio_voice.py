"""Twilio voice IVR: a call becomes one registered complaint, and the caller hears its
number read back digit by digit before the call ends.

The call walks language menu -> account number -> urgency -> ``<Record>``. What the caller
chose travels in the query of the next TwiML URL (signed by Twilio with the rest), so any
gateway process, also one started mid-call, can take the next step. The complaint is
registered when the recording ends (``<Record action>``), under the idempotency key
``call:<CallSid>``; the transcription and the downloaded recording arrive later and are
added as follow-ups of the same registration (``transcription:`` / ``recording:`` +
RecordingSid). Every callback of the call may register the complaint if it comes first.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from aiohttp import web
from multidict import MultiDict
from twilio.base.exceptions import TwilioException
from twilio.twiml.voice_response import VoiceResponse

from channels.phone.calls import call_follow_up, call_inbound, caller_number
from channels.phone.prompts import (
    DEFAULT_LOCALES,
    LANGUAGES,
    PROMPTS_SCHEMA,
    Prompts,
    language_from_speech,
    urgency_from_speech,
)
from channels.phone.twilio_common import SID, TWILIO_SETTINGS, DownloadFailed, TwilioAdapter, WebhookRejected
from gateway.adapters import AdapterContext, TemporaryFailure
from gateway.http import parse_json
from gateway.inbound import Inbound, InboundAttachment

#: Twilio's own voices for the three languages (Amazon Polly through Twilio).
DEFAULT_VOICES = {"ru": "Polly.Tatyana", "pl": "Polly.Maja", "en": "Polly.Joanna"}
RECORDING_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
SKIPPED = "-"


@dataclass(frozen=True, slots=True)
class CallState:
    """What the caller chose so far; carried in the query of every TwiML URL."""

    lang: str | None = None
    account: str | None = None  # the digits, SKIPPED, or None when not yet asked
    urgent: bool | None = None
    attempt: int = 1

    def query(self, **changes: Any) -> dict[str, str]:
        state = replace(self, **changes)
        return {"lang": state.lang or "", "account": state.account or "",
                "urgent": "" if state.urgent is None else ("1" if state.urgent else "0"),
                "try": str(state.attempt) if state.attempt > 1 else ""}


class TwilioVoiceAdapter(TwilioAdapter):
    name = "twilio_voice"
    version = "1.0"
    description = "Twilio voice IVR: language menu, account number, urgency, recorded complaint, number read back."
    capabilities = frozenset({"push", "attachments"})
    default_path_base = "/channels/phone/twilio/voice"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["account_sid", "auth_token"],
        "properties": {
            **TWILIO_SETTINGS,
            "languages": {"type": "array", "items": {"enum": list(LANGUAGES)}, "minItems": 1, "uniqueItems": True},
            "default_language": {"enum": list(LANGUAGES)},
            "locales": {"type": "object", "additionalProperties": False,
                        "properties": {lang: {"type": "string"} for lang in LANGUAGES}},
            "voices": {"type": "object", "additionalProperties": False,
                       "properties": {lang: {"type": ["string", "null"]} for lang in LANGUAGES}},
            "prompts": PROMPTS_SCHEMA,
            "speech_input": {"type": "boolean"},
            "ask_account": {"type": "boolean"},
            "account_min_digits": {"type": "integer", "minimum": 1},
            "account_max_digits": {"type": "integer", "minimum": 1, "maximum": 64},
            "ask_urgency": {"type": "boolean"},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
            "input_timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 60},
            "max_recording_seconds": {"type": "integer", "minimum": 2, "maximum": 14400},
            "silence_timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 60},
            "transcribe_languages": {"type": "array", "items": {"enum": list(LANGUAGES)}, "uniqueItems": True},
            "download_recordings": {"type": "boolean"},
            "recording_format": {"enum": list(RECORDING_TYPES)},
            "max_recording_bytes": {"type": "integer", "minimum": 1024},
        },
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.languages: list[str] = list(s.get("languages", LANGUAGES))
        self.default_language = s.get("default_language", self.languages[0])
        self.locales = {**DEFAULT_LOCALES, **(s.get("locales") or {})}
        self.voices = {**DEFAULT_VOICES, **(s.get("voices") or {})}
        self.prompts = Prompts(s.get("prompts"))
        self.speech = bool(s.get("speech_input", True))
        self.ask_account = bool(s.get("ask_account", True))
        self.account_digits = (int(s.get("account_min_digits", 4)), int(s.get("account_max_digits", 20)))
        self.ask_urgency = bool(s.get("ask_urgency", True))
        self.max_attempts = int(s.get("max_attempts", 3))
        self.input_timeout = int(s.get("input_timeout_seconds", 5))
        self.max_recording = int(s.get("max_recording_seconds", 120))
        self.silence_timeout = int(s.get("silence_timeout_seconds", 5))
        self.transcribe_languages = set(s.get("transcribe_languages", ["en"]))
        self.download_recordings = bool(s.get("download_recordings", False))
        self.recording_format = s.get("recording_format", "wav")
        self.max_recording_bytes = int(s.get("max_recording_bytes", 20 * 1024 * 1024))

    def routes(self) -> list[web.AbstractRouteDef]:
        steps = {"": self.incoming, "/language": self.chose_language, "/account": self.entered_account,
                 "/urgency": self.chose_urgency, "/record": self.record, "/recorded": self.recorded,
                 "/recording-status": self.recording_status, "/transcription": self.transcription}
        return [web.post(self.path + suffix, self.guarded(handler)) for suffix, handler in steps.items()]

    # -- the menu ---------------------------------------------------------------------
    async def incoming(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        self.log.info("call started", extra={"channel": self.instance, "call_sid": params.get("CallSid")})
        response = VoiceResponse()
        if len(self.languages) == 1:  # no language menu: greet, then go on in that language
            self.say(response, self.languages[0], "greeting")
            return self.twiml(self.next_step(CallState(lang=self.languages[0]), response))
        return self.twiml(self.next_step(CallState(), response))

    async def chose_language(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        state = self.state(request)
        digits = params.get("Digits", "")
        lang = None
        if _ascii_digits(digits) and 1 <= int(digits) <= len(self.languages):
            lang = self.languages[int(digits) - 1]
        elif params.get("SpeechResult"):
            lang = language_from_speech(params["SpeechResult"], self.languages)
        return self.answer(state, VoiceResponse(), lang=lang, fallback=self.default_language)

    async def entered_account(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        state = self.state(request)
        digits = params.get("Digits", "").strip("#*")
        low, high = self.account_digits
        if not digits:
            return self.answer(state, VoiceResponse(), account=SKIPPED, fallback=SKIPPED)
        if _ascii_digits(digits) and low <= len(digits) <= high:
            return self.answer(state, VoiceResponse(), account=digits, fallback=SKIPPED)
        response = VoiceResponse()
        self.say(response, state.lang, "account_invalid")
        return self.answer(state, response, account=None, fallback=SKIPPED)

    async def chose_urgency(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        state = self.state(request)
        digits = params.get("Digits", "")
        urgent = {"1": True, "2": False}.get(digits)
        if urgent is None and params.get("SpeechResult"):
            urgent = urgency_from_speech(params["SpeechResult"])
        response = VoiceResponse()
        if urgent:
            self.say(response, state.lang, "emergency")
        return self.answer(state, response, urgent=urgent, fallback=False)

    async def record(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        return self.twiml(self.next_step(self.state(request), VoiceResponse()))

    def answer(self, state: CallState, response: VoiceResponse, fallback: Any, **choice: Any) -> web.Response:
        """Take the caller's choice; ask again when there was none, at most
        ``max_attempts`` times, then go on with ``fallback``."""
        (field, value), = choice.items()
        if value is None:
            if state.attempt < self.max_attempts:
                if not response.verbs:
                    self.say(response, state.lang or self.default_language, "not_understood")
                return self.twiml(self.next_step(replace(state, attempt=state.attempt + 1), response))
            value = fallback
        return self.twiml(self.next_step(replace(state, attempt=1, **{field: value}), response))

    def next_step(self, state: CallState, response: VoiceResponse) -> VoiceResponse:
        """The TwiML that asks for the first thing the call does not know yet."""
        if state.lang is None:
            gather = self.gather(response, "/language", state, self.default_language, num_digits=1)
            if state.attempt == 1:
                self.say(gather, self.default_language, "greeting")
            for i, lang in enumerate(self.languages, 1):
                self.say(gather, lang, "language_option", digit=str(i))
            response.redirect(self.url("/language", state.query()), method="POST")
        elif self.ask_account and state.account is None:
            gather = self.gather(response, "/account", state, state.lang, dtmf_only=True, finish_on_key="#")
            self.say(gather, state.lang, "account")
            response.redirect(self.url("/account", state.query()), method="POST")
        elif self.ask_urgency and state.urgent is None:
            gather = self.gather(response, "/urgency", state, state.lang, num_digits=1)
            self.say(gather, state.lang, "urgency")
            response.redirect(self.url("/urgency", state.query()), method="POST")
        else:
            self.record_verbs(state, response)
        return response

    def record_verbs(self, state: CallState, response: VoiceResponse) -> None:
        lang = state.lang or self.default_language
        callbacks = state.query(attempt=1)
        transcribe = lang in self.transcribe_languages
        self.say(response, lang, "record")
        response.record(
            action=self.url("/recorded", callbacks), method="POST", max_length=self.max_recording,
            timeout=self.silence_timeout, finish_on_key="#", play_beep=True, trim="trim-silence",
            recording_status_callback=self.url("/recording-status", callbacks), recording_status_callback_method="POST",
            recording_status_callback_event="completed",
            transcribe=transcribe, transcribe_callback=self.url("/transcription", callbacks) if transcribe else None,
        )
        # Twilio goes on here only when the recording was empty (it then skips the action)
        self.say(response, lang, "no_message")
        if state.attempt < self.max_attempts:
            response.redirect(self.url("/record", state.query(attempt=state.attempt + 1)), method="POST")
        else:  # register the call without a message: the company calls back
            response.redirect(self.url("/recorded", callbacks), method="POST")

    def gather(self, response: VoiceResponse, step: str, state: CallState, lang: str, *, dtmf_only: bool = False,
               **attributes: Any) -> Any:
        speech = self.speech and not dtmf_only
        return response.gather(
            input="dtmf speech" if speech else "dtmf", action=self.url(step, state.query()), method="POST",
            timeout=self.input_timeout, language=self.locales[lang] if speech else None,
            speech_timeout="auto" if speech else None, action_on_empty_result=True, **attributes)

    def say(self, verb: Any, lang: str | None, key: str, **values: str) -> None:
        lang = lang or self.default_language
        verb.say(self.prompts.text(lang, key, **values), language=self.locales[lang], voice=self.voices.get(lang))

    def state(self, request: web.Request) -> CallState:
        q = request.query
        lang = q.get("lang") or None
        account = q.get("account") or None
        urgent = q.get("urgent") or None
        attempt = q.get("try", "1")
        low, high = self.account_digits
        if (lang is not None and lang not in self.languages) or urgent not in (None, "0", "1") \
                or not _ascii_digits(attempt) or not 1 <= int(attempt) <= self.max_attempts \
                or (account not in (None, SKIPPED) and not (_ascii_digits(account) and low <= len(account) <= high)):
            raise WebhookRejected(400, "malformed", "unexpected call state in the URL")
        return CallState(lang, account, None if urgent is None else urgent == "1", int(attempt))

    # -- the complaint ----------------------------------------------------------------
    async def recorded(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        """The recording ended (or the caller left none): register, read the number back."""
        state = self.state(request)
        lang = state.lang or self.default_language
        response = VoiceResponse()
        try:
            submitted = await self.deliver(await self.call_complaint(params, state))
        except TemporaryFailure:
            self.say(response, lang, "failure")
            response.hangup()
            return self.twiml(response)
        if submitted.receipt.registration_number and submitted.complaint is not None:
            # the gateway's spoken acknowledgement: the number digit by digit, twice, and the deadline
            response.say(self.context.texts.render(submitted.complaint, submitted.receipt, door="ivr"),
                         language=self.locales[lang], voice=self.voices.get(lang))
            response.pause(length=1)
        else:
            self.say(response, lang, "accepted")
        self.say(response, lang, "goodbye")
        response.hangup()
        return self.twiml(response)

    async def recording_status(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        """The recording file is ready: keep a copy in the blob store when configured."""
        status = params.get("RecordingStatus", "")
        if status != "completed":
            self.log.info("recording not completed", extra={"channel": self.instance, "status": status,
                                                            "call_sid": params.get("CallSid")})
            return web.Response(status=204)
        if not self.download_recordings:  # the complaint already links the recording
            return web.Response(status=204)
        try:
            # this callback carries no From/To: the call is looked up (it may come before <Record action>)
            base = await self.call_complaint(params, self.state(request))
            submitted = await self.deliver(base)
            recording_sid = _sid(params.get("RecordingSid"), "RE")
            account_sid = self.account_sid
            data, _ctype = await self.download(
                f"/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}.{self.recording_format}",
                self.max_recording_bytes)
            follow_up = call_follow_up(
                base, message_id=f"recording:{recording_sid}", registration_number=submitted.receipt.registration_number,
                raw=dict(params), meta={"recording_sid": recording_sid, "part": "recording"})
            follow_up.attachments.append(InboundAttachment(
                filename=f"{recording_sid}.{self.recording_format}", content_type=RECORDING_TYPES[self.recording_format],
                data=data))
            await self.deliver(follow_up)
        except DownloadFailed as exc:
            self.log.warning("recording download failed; the complaint keeps its link",
                             extra={"channel": self.instance, "call_sid": params.get("CallSid"), "error": str(exc)})
            return web.Response(status=502, text="recording download failed")
        except TemporaryFailure:
            return web.Response(status=503, text="temporarily unavailable")
        return web.Response(status=204)

    async def transcription(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        """The transcription is ready: its text is added to the call's complaint."""
        text = params.get("TranscriptionText", "").strip()
        if params.get("TranscriptionStatus") != "completed" or not text:
            self.log.info("no transcription", extra={"channel": self.instance, "call_sid": params.get("CallSid"),
                                                     "status": params.get("TranscriptionStatus")})
            return web.Response(status=204)
        recording_sid = _sid(params.get("RecordingSid"), "RE")
        try:
            base = await self.call_complaint(params, self.state(request))
            submitted = await self.deliver(base)
            await self.deliver(call_follow_up(
                base, message_id=f"transcription:{recording_sid}", registration_number=submitted.receipt.registration_number,
                text=text, raw=dict(params),
                meta={"recording_sid": recording_sid, "transcription_sid": params.get("TranscriptionSid"),
                      "part": "transcription"}))
        except TemporaryFailure:
            return web.Response(status=503, text="temporarily unavailable")
        return web.Response(status=204)

    async def call_complaint(self, params: MultiDict[str], state: CallState) -> Inbound:
        """The call's complaint as any of its callbacks can build it."""
        call_sid = _sid(params.get("CallSid"), "CA")
        caller, called = await self.caller_and_called(params, call_sid)
        lang = state.lang or self.default_language
        recording_sid = params.get("RecordingSid") if SID.match(params.get("RecordingSid", "")) else None
        account = state.account if state.account not in (None, SKIPPED) else None
        meta: dict[str, Any] = {"provider": "twilio", "transcription": "requested" if lang in self.transcribe_languages
                                else "off"}
        if recording_sid:
            meta.update(recording_sid=recording_sid, recording_url=params.get("RecordingUrl"),
                        recording_seconds=_int(params.get("RecordingDuration")))
        # the text is only the call's ids: unique, so that two calls of one customer are never
        # taken for a repeat; what the caller said follows as the transcription
        return call_inbound(
            instance=self.instance, call_id=call_sid, caller=caller_number(caller, self.region), called=called,
            language=lang, account=account, urgent=bool(state.urgent), subject=self.prompts.text(lang, "subject"),
            text=" ".join(filter(None, (call_sid, recording_sid))), raw=dict(params), meta=meta)

    async def caller_and_called(self, params: MultiDict[str], call_sid: str) -> tuple[str | None, str | None]:
        """From/To of the call; recording status callbacks do not carry them, so the call
        is then fetched from the Twilio REST API."""
        if "From" in params:
            return params.get("From"), params.get("To")
        try:
            client = self.rest_client()
            uri = f"{client.api.base_url}/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"
            response = await client.request_async("GET", uri)
            if response.status_code != 200:
                raise TwilioException(f"HTTP {response.status_code}")
            call = parse_json(response.text)
            if not isinstance(call, dict):
                raise TwilioException("the Call resource is not a JSON object")
            return call.get("from"), call.get("to")
        except (TwilioException, ValueError, OSError) as exc:
            self.log.warning("call lookup failed", extra={"channel": self.instance, "call_sid": call_sid, "error": repr(exc)})
            raise TemporaryFailure("the call could not be looked up") from exc


def _sid(value: str | None, prefix: str) -> str:
    if not value or not SID.match(value) or not value.startswith(prefix):
        raise WebhookRejected(400, "malformed", f"missing or invalid {prefix} sid")
    return value


def _ascii_digits(value: str) -> bool:
    """0-9 only: ``str.isdigit()`` also takes "²", which ``int()`` refuses."""
    return value.isascii() and value.isdigit()


def _int(value: str | None) -> int | None:
    return int(value) if value and _ascii_digits(value) else None

