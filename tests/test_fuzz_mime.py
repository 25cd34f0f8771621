"""Fuzzing the MIME parser (hypothesis): hostile mails — malformed and truncated headers,
unknown charsets and transfer encodings, deep and wide multiparts, header injection in
names, path traversal and control characters in attachment names, base64 garbage, bombs.
The parser gives an Inbound in bounded time with safe file names, or an exception that the
SMTP door keeps as a dead letter; the gateway keeps serving."""
from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email.cli import parse_file
from channels.email.convert import mail_to_inbound
from gateway.inbound import Inbound, safe_filename
from normalizer.pipeline import NormalizationError, Normalizer
from tests.conftest import registry_of
from tests.test_email_support import adapter_of, smtp_channel, smtp_send

T = TypeVar("T")
TIME_LIMIT = 10.0  # seconds for one mail: far more than any real mail needs
TO = ["complaints@operator.example"]
HEAD = (b"From: =?utf-8?B?0JjQstCw0L0=?= <ivan@example.net>\r\nTo: complaints@operator.example\r\n"
        b"Subject: test\r\nMessage-ID: <fuzz@example.net>\r\nMIME-Version: 1.0\r\n")
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fuzz-mime")
_normalizer = Normalizer()


def within_time_limit(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, failing the test if it takes longer than ``TIME_LIMIT`` (a hang)."""
    return _pool.submit(fn, *args).result(timeout=TIME_LIMIT)


def assert_safe_name(name: str) -> None:
    assert name and name == safe_filename(name), repr(name)
    assert "/" not in name and "\\" not in name and not name.startswith(".") and len(name) <= 200
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in name), repr(name)


def check_mail(raw: bytes) -> Inbound:
    """The properties every mail must have, whatever it holds."""
    inbound = within_time_limit(mail_to_inbound, raw, "email")
    assert isinstance(inbound, Inbound)
    assert inbound.raw == raw and inbound.message_id
    for attachment in inbound.attachments:
        assert_safe_name(attachment.filename)
        assert attachment.size == len(attachment.data or b"")
    for listed in inbound.meta.get("attachments_over_limit", []):
        assert_safe_name(listed["filename"])
    json.dumps(inbound.to_record(), ensure_ascii=False).encode("utf-8")  # the dead-letter record can be stored
    try:
        complaint = within_time_limit(_normalizer.normalize, inbound)
    except NormalizationError:
        return inbound  # a dead letter: kept with its reason
    for value in (complaint.customer.name, complaint.subject):
        assert "\r" not in (value or "") and "\n" not in (value or ""), repr(value)
    for identity in complaint.customer.identities:
        assert "\n" not in identity.value and "\r" not in identity.value
    complaint.to_json().encode("utf-8")  # storable: no lone surrogates from undecodable bytes
    return inbound


# -- strategies -------------------------------------------------------------------------------
CHARSETS = st.sampled_from([b"utf-8", b"koi8-r", b"windows-1251", b"windows-1250", b"iso-gb2312", b"gb2312", b"x-unknown",
                            b"", b"utf-7", b"utf-16", b"utf-32", b"iso-2022-jp", b"\xff\xfe", b"us-ascii", b"latin1'pl'"]) \
    | st.binary(max_size=12)
ENCODED_WORDS = st.builds(lambda cs, enc, payload: b"=?" + cs + b"?" + enc + b"?" + payload + b"?=",
                          CHARSETS, st.sampled_from([b"B", b"Q", b"b", b"q", b"X", b""]), st.binary(max_size=60))
INJECTION = st.builds(lambda name, nl: name + nl + b"Bcc: victim@example.org" + nl + b"X-Injected: 1",
                      st.sampled_from([b"Ivan", b"=?utf-8?Q?Ivan?=", b'"Ivan']), st.sampled_from([b"\r\n", b"\n", b"\r", b"%0d%0a"]))
HEADER_VALUES = st.one_of(st.binary(max_size=200), ENCODED_WORDS, INJECTION,
                          st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")),
                          st.lists(ENCODED_WORDS, max_size=5).map(b" ".join))
HEADER_NAMES = st.sampled_from([b"From", b"To", b"Cc", b"Subject", b"Reply-To", b"Sender", b"Return-Path", b"Message-ID",
                                b"Date", b"Content-Type", b"Content-Transfer-Encoding", b"Content-Disposition",
                                b"Auto-Submitted", b"Precedence", b"In-Reply-To", b"References"]) \
    | st.binary(min_size=1, max_size=20)
HOSTILE_NAMES = st.sampled_from(["../../etc/passwd", "..\\..\\windows\\system32\\cmd.exe", "%2e%2e%2fsecret.txt", "....",
                                 "bill.pdf\r\nContent-Type: text/html", "\x00evil.exe", "a/b/../../c.sh", ".htaccess",
                                 "<script>alert(1)</script>.html", "CON", "\u202egnp.exe", "x" * 5000 + ".pdf", ""]) \
    | st.text(max_size=300)
TRANSFER_ENCODINGS = st.sampled_from([b"base64", b"quoted-printable", b"7bit", b"8bit", b"binary", b"x-uuencode", b"garbage", b""])
LEAF_TYPES = st.sampled_from([b"text/plain", b"text/html", b"application/octet-stream", b"image/png", b"message/rfc822",
                              b"text/enriched", b"application/pdf", b"multipart/mixed", b"message/delivery-status", b"",
                              b"text/plain; format=flowed; delsp=yes", b"garbage/", b"/"])
SUBTYPES = st.sampled_from([b"mixed", b"alternative", b"related", b"signed", b"report", b"encrypted", b"digest", b"x-unknown"])


def _quoted(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


@dataclass
class Leaf:
    content_type: bytes
    charset: bytes | None
    encoding: bytes | None
    filename: str | None
    filename_style: int
    payload: bytes

    def render(self) -> bytes:
        ctype = self.content_type + (b"; charset=" + self.charset if self.charset is not None else b"")
        head = b"Content-Type: " + ctype + b"\r\n"
        if self.encoding is not None:
            head += b"Content-Transfer-Encoding: " + self.encoding + b"\r\n"
        if self.filename is not None:
            name = _quoted(self.filename)
            head += [b'Content-Disposition: attachment; filename="' + name + b'"\r\n',
                     b"Content-Disposition: attachment; filename*=utf-8''" + name.replace(b"%", b"%25").replace(b"/", b"%2F") + b"\r\n",
                     b'Content-Disposition: inline; filename="=?utf-8?B?' + name[:40].hex().encode() + b'?="\r\n',
                     b"Content-Type: application/octet-stream; name=" + name + b"\r\n"][self.filename_style]
        return head + b"\r\n" + self.payload


@dataclass
class Multipart:
    subtype: bytes
    boundary: bytes
    children: list[Any]
    closed: bool

    def render(self) -> bytes:
        out = b"Content-Type: multipart/" + self.subtype + b'; boundary="' + self.boundary + b'"\r\n\r\npreamble\r\n'
        for child in self.children:
            out += b"--" + self.boundary + b"\r\n" + child.render() + b"\r\n"
        return out + (b"--" + self.boundary + b"--\r\n" if self.closed else b"")


LEAVES = st.builds(Leaf, LEAF_TYPES, st.none() | CHARSETS, st.none() | TRANSFER_ENCODINGS, st.none() | HOSTILE_NAMES,
                   st.integers(0, 3), st.binary(max_size=400) | st.sampled_from([b"!!!@@@###" * 20, b"=ZZ=\r\n=", b"begin 644 x\r\n"]))
TREES = st.recursive(LEAVES, lambda children: st.builds(
    Multipart, SUBTYPES, st.sampled_from([b"b1", b"b2", b"", b'"', b"x" * 80]) | st.binary(min_size=1, max_size=10),
    st.lists(children, max_size=5), st.booleans()), max_leaves=25)


@st.composite
def hostile_mails(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12))
    separator = draw(st.sampled_from([b": ", b":", b" : ", b"", b"\r\n "]))
    head = b"".join(name + separator + value + b"\r\n" for name, value in headers)
    raw = draw(st.sampled_from([HEAD, b""])) + head + draw(TREES).render()
    cut = draw(st.none() | st.integers(0, max(0, len(raw))))  # truncated anywhere, like a broken connection
    return raw if cut is None else raw[:cut]


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(raw=hostile_mails())
def test_hostile_mail_gives_an_inbound_with_safe_names(raw: bytes) -> None:
    check_mail(raw)


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=3000))
def test_any_bytes_give_an_inbound(raw: bytes) -> None:
    check_mail(raw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=hostile_mails())
def test_parse_email_command_answers_every_file(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(raw)
    record = within_time_limit(parse_file, path, _normalizer, "email")
    assert ("error" in record and record["file"] == str(path)) or record["channel_message_id"]
    json.dumps(record, ensure_ascii=False, default=str)


# -- named hostile cases ----------------------------------------------------------------------
def attachment_mail(parts: list[bytes]) -> bytes:
    body = b"".join(b"--BB\r\n" + part + b"\r\n" for part in parts)
    return HEAD + b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n" + body + b"--BB--\r\n"


def nested_mail(depth: int) -> bytes:
    body = b"".join(b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1) for i in range(depth))
    return HEAD + b"Content-Type: multipart/mixed; boundary=B0\r\n\r\n" + body + \
        b"--B%d\r\nContent-Type: text/plain\r\n\r\nThe words at the bottom.\r\n" % depth


def test_ten_megabyte_line_is_read_whole_in_bounded_time() -> None:
    inbound = check_mail(HEAD + b"\r\n" + b"A" * 10_000_000 + b"\r\n")
    assert len(inbound.text or "") == 10_000_000


def test_thousand_parts_are_kept_or_listed_never_dropped() -> None:
    parts = [b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="../f%d.bin"\r\n\r\nxyz' % i
             for i in range(1000)]
    inbound = check_mail(attachment_mail([b"Content-Type: text/plain\r\n\r\nsee the files"] + parts))
    over = inbound.meta["attachments_over_limit"]
    assert len(inbound.attachments) == 20 and len(over) == 980
    assert {a.filename for a in inbound.attachments} | {o["filename"] for o in over} == {f"f{i}.bin" for i in range(1000)}


@pytest.mark.parametrize("depth", [50, 400])
def test_nested_multiparts_reach_the_text(depth: int) -> None:
    assert "The words at the bottom." in (check_mail(nested_mail(depth)).text or "")


def test_huge_and_many_headers_are_bounded() -> None:
    check_mail(HEAD.replace(b"Subject: test", b"Subject: " + b"y" * 2_000_000) + b"\r\nbody\r\n")
    check_mail(HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(50_000)) + b"\r\nbody\r\n")
    check_mail(HEAD + b"X-Folded: a" + b"\r\n b" * 200_000 + b"\r\n\r\nbody\r\n")
    check_mail(HEAD.replace(b"Subject: test", b"Subject: " + b"=?utf-8?B?0J/RgNC40LLQtdGC?= " * 20_000) + b"\r\nbody\r\n")


def test_attachment_names_lose_directories_and_control_characters() -> None:
    inbound = check_mail(attachment_mail([
        b"Content-Type: text/plain\r\n\r\nhello",
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2Fpasswd%0D%0AX: y\r\n\r\na",
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="..\\\\..\\\\boot.ini"\r\n\r\nb',
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="=?utf-8?Q?=2E=2E=2Fevil=00.sh?="\r\n\r\nc',
    ]))
    names = [a.filename for a in inbound.attachments]
    assert names[0].startswith("passwd") and names[1] == "boot.ini" and names[2].startswith("evil")


def test_header_injection_in_the_sender_name_stays_one_name() -> None:
    raw = (b"From: =?utf-8?Q?Ivan=0D=0ABcc=3A_victim=40example=2Eorg?= <ivan@example.net>\r\nTo: complaints@operator.example\r\n"
           b"Subject: =?utf-8?Q?hi=0D=0AX-Injected=3A_1?=\r\nMessage-ID: <inj@example.net>\r\n\r\n"
           + "Прошу разобраться со счётом.\r\n".encode())
    inbound = check_mail(raw)
    complaint = _normalizer.normalize(inbound)
    assert [(i.kind, i.value) for i in complaint.customer.identities] == [("email", "ivan@example.net")]
    assert "victim" not in json.dumps([i.value for i in complaint.customer.identities])


async def test_smtp_door_survives_bombs_and_keeps_serving(make_config, start_gateway) -> None:
    client = await start_gateway(make_config(channels={"email": smtp_channel()}))
    port = adapter_of(client, "email").port
    bombs = {
        "deep nesting": nested_mail(3000),  # deeper than the stdlib parser can go: a dead letter, never a crash
        "thousand parts": attachment_mail([b"Content-Type: application/octet-stream\r\n\r\n%d" % i for i in range(1000)]),
        "garbage base64": HEAD + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"!!@@##\r\n" * 5000,
        "no headers at all": (b"\x00\xff" * 400 + b"\r\n") * 20,
    }
    answers = {}
    for i, (name, raw) in enumerate(bombs.items()):
        raw = raw.replace(b"<fuzz@", b"<bomb%d@" % i)
        session = await smtp_send(port, raw, TO)
        assert session.data is not None, name
        answers[name] = session.data
    assert all(code == 250 for code, _ in answers.values()), answers
    assert answers["deep nesting"][1].endswith(b"dead_letter")
    assert not answers["thousand parts"][1].endswith(b"dead_letter")
    registry = registry_of(client)
    dead = await registry.list_dead_letters()
    assert len(dead) == 1 and dead[0]["record"]["raw_sha256"]  # the original is kept for replay
    assert "RecursionError" in dead[0]["reason"] or "RecursionError" in json.dumps(dead[0]["record"]["meta"])

    line = await smtp_send(port, HEAD + b"\r\n" + b"A" * 2_000_000 + b"\r\n", TO)  # over RFC 5321's 998
    assert line.data is not None and line.data[0] in (250, 500, 552), line.data
    healthy = await smtp_send(port, HEAD.replace(b"<fuzz@", b"<after@") + "\r\nЖалоба после атаки: нет связи.\r\n".encode(), TO)
    assert healthy.data is not None and healthy.data[0] == 250 and not healthy.data[1].endswith(b"dead_letter")
    assert (await client.get("/healthz")).status == 200
