"""Hostile input at the core's own door and helpers: property-based tests (hypothesis)
against a real gateway process. Every request gets a defined answer; none crashes it."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.inbound import Inbound, safe_filename
from gateway.testing.plugin import base_config
from gateway.testing.servers import memory_cap
from normalizer.pipeline import Normalizer

ROOT = Path(__file__).resolve().parent.parent
DEFINED = {200, 201, 202, 400, 413, 415, 422, 429}


@pytest.fixture(scope="module")
def gateway_port(tmp_path_factory: pytest.TempPathFactory):
    import socket

    tmp = tmp_path_factory.mktemp("hostile")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = base_config(tmp, channels={"web": {"adapter": "web_form", "rate_limit_per_minute": 0, "max_body_bytes": 65536}})
    raw["http"] = {"host": "127.0.0.1", "port": port}
    raw["logging"] = {"level": "WARNING"}
    (tmp / "config.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(tmp / "config.yaml"), "run"], cwd=ROOT,
                            stderr=subprocess.DEVNULL, preexec_fn=memory_cap())
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 0


def post(port: int, body: bytes, content_type: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/web/complaints", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
                           max_leaves=20)
form_like = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=300), "phone": st.text(max_size=40), "email": st.text(max_size=80),
    "text": st.text(max_size=2000), "subject": st.text(max_size=300), "preferred_channel": st.text(max_size=10),
    "registration_number": st.text(max_size=30), "attachments": json_values, "lang": st.text(max_size=5)})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(form_like, json_values))
def test_any_json_gets_a_defined_answer(gateway_port: int, body: object) -> None:
    assert post(gateway_port, json.dumps(body).encode(), "application/json") in DEFINED


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.binary(max_size=5000), content_type=st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
     "multipart/form-data", "text/plain", "application/json; charset=koi8-r"]))
def test_any_bytes_get_a_defined_answer(gateway_port: int, body: bytes, content_type: str) -> None:
    assert post(gateway_port, body, content_type) in DEFINED


def test_huge_and_truncated_bodies(gateway_port: int) -> None:
    assert post(gateway_port, b'{"text": "' + b"x" * 200_000 + b'"}', "application/json") == 413
    assert post(gateway_port, b'{"text": "abc', "application/json") == 400
    deep = b"[" * 50_000 + b"]" * 50_000
    assert post(gateway_port, deep[:60_000], "application/json") in (400, 413)
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/healthz", timeout=5) as resp:
        assert resp.status == 200


@given(st.text())
def test_safe_filename_never_escapes_or_hides(name: str) -> None:
    safe = safe_filename(name)
    assert safe and "/" not in safe and "\\" not in safe
    assert not safe.startswith(".") and len(safe) <= 200
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in safe)


def test_path_traversal_names_are_reduced_to_base_names() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\..\\windows\\system32\\cmd.exe") == "cmd.exe"
    assert safe_filename("%2e%2e%2fsecret.txt") == "secret.txt"
    assert safe_filename("....") == "attachment"


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=200), subject=st.text(max_size=200), text=st.text(min_size=1, max_size=500),
       phone=st.text(max_size=30), email=st.text(max_size=60))
def test_normaliser_never_crashes_and_strips_header_injection(name: str, subject: str, text: str, phone: str, email: str) -> None:
    inbound = Inbound(channel="web", message_id="m", identities=[("phone", phone), ("email", email)], name=name + "\r\nBcc: x@evil",
                      subject=subject + "\r\nX-Injected: 1", text=text + "x")
    complaint = Normalizer().normalize(inbound)
    assert "\n" not in (complaint.customer.name or "") and "\r" not in (complaint.subject or "")
    for identity in complaint.customer.identities:
        assert identity.kind in ("phone", "email") and "\n" not in identity.value
