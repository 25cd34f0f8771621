"""The SMTP/LMTP door, end to end: real smtplib sessions against the adapter inside a running
gateway, acknowledgements captured by a real SMTP relay on loopback."""
from __future__ import annotations

import email
import subprocess
from email import policy

import pytest

from tests.conftest import registry_of
from tests.test_email_support import adapter_of, make_mail, relay_fixture, smtp_channel, smtp_send  # noqa: F401

TO = ["complaints@operator.example"]


async def _gateway(make_config, start_gateway, relay_port=None, backend="sqlite", **settings):
    client = await start_gateway(make_config(backend=backend, channels={"email": smtp_channel(relay_port, **settings)}))
    return client, adapter_of(client, "email")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_mail_is_registered_and_acknowledged_with_number(backend, make_config, start_gateway, relay, redis_url):
    client, adapter = await _gateway(make_config, start_gateway, relay.port, backend=backend)
    raw = make_mail(message_id="<first@example.net>")
    session = await smtp_send(adapter.port, raw, TO)
    assert session.rcpt == [250]
    code, reply = session.data
    assert code == 250
    number = reply.decode().split()[-1]
    events = await registry_of(client).read_events("test", "c1")
    complaint = events[0].payload["complaint"]
    assert complaint["registration_number"] == number
    assert complaint["customer"]["name"] == "Иван Петров"
    assert {"kind": "email", "value": "ivan@example.net"} in complaint["customer"]["identities"]
    assert "роутер мигает красным" in complaint["text"]
    assert complaint["subject"] == "Нет интернета"

    mail_from, rcpt_tos, data = await relay.next_message()
    ack = email.message_from_bytes(data, policy=policy.default)
    assert mail_from == "<>" and rcpt_tos == ["ivan@example.net"]  # null sender: a bounce of it is never answered
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<first@example.net>"
    assert number in ack["Message-ID"] and number in ack["Subject"]
    body = ack.get_content()
    assert number in body and "зарегистрировано" in body


async def test_foreign_recipient_gets_550_never_relayed(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    session = await smtp_send(adapter.port, make_mail(), ["someone@elsewhere.example"])
    assert session.rcpt == [550] and session.data is None
    assert await registry_of(client).queue_length() == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="email",reason="unknown_recipient"} 1.0' in metrics


async def test_configured_domain_is_accepted_and_many_recipients_make_one_complaint(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    session = await smtp_send(adapter.port, make_mail(), TO + ["biuro@reklamacje.example", "x@elsewhere.example"])
    assert session.rcpt == [250, 250, 550]
    assert session.data[0] == 250
    events = await registry_of(client).read_events("test", "c1")
    assert len(events) == 1
    assert events[0].payload["complaint"]["meta"]["email"]["envelope"]["rcpt_tos"] == TO + ["biuro@reklamacje.example"]


async def test_oversized_mail_gets_552(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway, max_message_bytes=2048)
    big = make_mail("Очень длинная жалоба.\n" * 400)
    session = await smtp_send(adapter.port, big, TO)
    assert session.mail[0] == 552  # announced with SIZE: refused before the data is sent
    undeclared = await smtp_send(adapter.port, big, TO, declare_size=False)
    assert undeclared.data[0] == 552
    assert await registry_of(client).queue_length() == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="email",reason="too_large"}' in metrics


async def test_registry_failure_answers_451_and_the_retry_registers(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    registry = registry_of(client)
    real_submit = registry.submit_many

    async def broken_submit(complaints, plans=None):
        raise ConnectionError("database is down")

    registry.submit_many = broken_submit
    raw = make_mail()
    session = await smtp_send(adapter.port, raw, TO)
    assert session.data[0] == 451
    registry.submit_many = real_submit
    retry = await smtp_send(adapter.port, raw, TO)
    assert retry.data[0] == 250
    assert await registry.queue_length() == 1


async def test_redelivered_mail_is_a_duplicate_and_not_answered_twice(make_config, start_gateway, relay):
    client, adapter = await _gateway(make_config, start_gateway, relay.port)
    raw = make_mail(message_id="<same@example.net>")
    first = await smtp_send(adapter.port, raw, TO)
    second = await smtp_send(adapter.port, raw, TO)
    assert first.data[0] == second.data[0] == 250
    assert first.data[1].split()[-1] == second.data[1].split()[-1]  # the same registration number
    assert await registry_of(client).queue_length() == 1
    await relay.next_message()
    await adapter.drain()
    assert relay.messages.qsize() == 0


async def test_other_mail_reusing_a_message_id_is_not_dropped(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    first = await smtp_send(adapter.port, make_mail("Нет интернета с понедельника.", message_id="<dup@x>"), TO)
    other = await smtp_send(adapter.port, make_mail("Счёт за май выставлен дважды.", sender="anna@example.org",
                                                    message_id="<dup@x>"), TO)
    assert first.data[1].split()[-1] != other.data[1].split()[-1]
    assert await registry_of(client).queue_length() == 2


@pytest.mark.parametrize("headers, rule", [
    ({"Auto-Submitted": "auto-replied"}, "auto_submitted"),
    ({"X-Autoreply": "yes"}, "autoreply_header"),
    ({"Precedence": "bulk"}, "precedence"),
    ({"Subject": "Automatische Antwort: Net"}, "out_of_office_subject"),
])
async def test_auto_reply_is_automatic_and_never_answered(headers, rule, make_config, start_gateway, relay):
    client, adapter = await _gateway(make_config, start_gateway, relay.port)
    subject = headers.pop("Subject", "Re: Обращение")
    session = await smtp_send(adapter.port, make_mail("Я в отпуске до понедельника.", subject=subject, headers=headers), TO)
    assert session.data[0] == 250 and session.data[1].split()[-1] == b"automatic"
    await adapter.drain()
    assert relay.messages.qsize() == 0
    stored = await registry_of(client).list_messages()
    assert stored[0].auto_submitted is True and stored[0].meta["automatic_rule"] == rule
    assert stored[0].registration_number is None


async def test_auto_submitted_no_is_a_human(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    session = await smtp_send(adapter.port, make_mail(headers={"Auto-Submitted": "no"}), TO)
    assert session.data[1].split()[-1] != b"automatic"
    assert await registry_of(client).queue_length() == 1


async def test_number_in_subject_is_a_follow_up_only_from_the_same_customer(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    first = await smtp_send(adapter.port, make_mail(), TO)
    number = first.data[1].decode().split()[-1]
    own = await smtp_send(adapter.port, make_mail("Роутер так и не заработал.", subject=f"Re: Обращение {number}"), TO)
    stranger = await smtp_send(adapter.port, make_mail("Допишите меня к чужой жалобе.", sender="eve@example.com",
                                                       subject=f"Re: Обращение {number}"), TO)
    assert own.data[1].decode().split()[-1] == number
    assert stranger.data[1].decode().split()[-1] != number
    registration = await registry_of(client).get_registration(number)
    assert [m["kind"] for m in registration["messages"]] == ["new", "follow_up"]
    assert (await registry_of(client).list_messages())[0].meta["in_reply_to_rejected"] == number


async def test_reply_to_our_acknowledgement_threads_by_message_id(make_config, start_gateway, relay):
    client, adapter = await _gateway(make_config, start_gateway, relay.port)
    first = await smtp_send(adapter.port, make_mail(), TO)
    number = first.data[1].decode().split()[-1]
    _, _, data = await relay.next_message()
    ack_id = email.message_from_bytes(data, policy=policy.default)["Message-ID"]
    reply = make_mail("И ещё: телефон тоже не работает.", subject="Другая тема", headers={"In-Reply-To": ack_id})
    session = await smtp_send(adapter.port, reply, TO)
    assert session.data[1].decode().split()[-1] == number
    stored = await registry_of(client).list_messages()
    assert stored[0].meta["thread_by"] == "references"


async def test_lmtp_mode_answers_per_recipient(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway, lmtp=True)
    session = await smtp_send(adapter.port, make_mail(), TO + ["biuro@reklamacje.example"], lmtp=True)
    assert session.rcpt == [250, 250]
    assert session.data[0] == 250
    assert await registry_of(client).queue_length() == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd's, for this test's plain AUTH
async def test_auth_required_refuses_anonymous_mail(make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway, auth_required=True, auth_require_tls=False,
                                     users={"scanner": "s3cret"})
    anonymous = await smtp_send(adapter.port, make_mail(), TO)
    assert anonymous.mail[0] == 530
    authenticated = await smtp_send(adapter.port, make_mail(), TO, login=("scanner", "s3cret"))
    assert authenticated.data[0] == 250
    assert await registry_of(client).queue_length() == 1


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_starttls_can_be_required(make_config, start_gateway, certificate):
    cert, key = certificate
    _, adapter = await _gateway(make_config, start_gateway, tls_cert_file=str(cert), tls_key_file=str(key),
                                     require_starttls=True)
    plain = await smtp_send(adapter.port, make_mail(), TO)
    assert plain.mail[0] == 530
    secure = await smtp_send(adapter.port, make_mail(), TO, starttls=True)
    assert secure.data[0] == 250


@pytest.mark.parametrize("raw", [
    b"\x00\xff\xfe not a mail at all \x80\x81",
    (b"From: broken\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain; charset=bogus-42"
     b"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"),
    b"Subject: =?utf-8?B?broken\r\n\r\n",
])
async def test_malformed_mail_is_kept_never_a_crash(raw, make_config, start_gateway):
    client, adapter = await _gateway(make_config, start_gateway)
    session = await smtp_send(adapter.port, raw, TO)
    assert session.data[0] == 250
    registry = registry_of(client)
    kept = len(await registry.list_messages()) + len(await registry.list_dead_letters())
    assert kept == 1


async def test_acknowledgements_are_rate_limited_per_recipient(make_config, start_gateway, relay):
    client, adapter = await _gateway(make_config, start_gateway, relay.port, ack_rate_limit_per_hour=1)
    await smtp_send(adapter.port, make_mail("Первая жалоба про интернет."), TO)
    await smtp_send(adapter.port, make_mail("Вторая жалоба: счёт за телефон."), TO)
    await relay.next_message()
    await adapter.drain()
    assert relay.messages.qsize() == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="email",reason="ack_rate_limited"} 1.0' in metrics


async def test_operator_reply_is_sent_by_mail(make_config, start_gateway, relay):
    client, adapter = await _gateway(make_config, start_gateway, relay.port, acknowledge=False)
    await smtp_send(adapter.port, make_mail(message_id="<q@example.net>"), TO)
    complaint = (await registry_of(client).list_messages())[0]
    await adapter.send_reply(complaint, "Мастер приедет завтра с 10 до 12.")
    mail_from, rcpt_tos, data = await relay.next_message()
    reply = email.message_from_bytes(data, policy=policy.default)
    assert rcpt_tos == ["ivan@example.net"] and mail_from == "complaints@operator.example"
    assert reply["Auto-Submitted"] is None
    assert complaint.registration_number in reply["Subject"]
    assert reply["In-Reply-To"] == "<q@example.net>"
    assert "Мастер приедет" in reply.get_content()


async def test_an_acknowledgement_the_relay_defers_is_sent_again_and_one_it_refuses_is_not(make_config, start_gateway, relay):
    client = await start_gateway(make_config(channels={"email": smtp_channel(relay.port)},
                                             acknowledgements={"retry": {"attempts": 3, "first_delay_seconds": 0.05}}))
    adapter = adapter_of(client, "email")
    relay.refusals = ["451 4.3.0 Try again later"]
    await smtp_send(adapter.port, make_mail("Первая жалоба про интернет.", message_id="<one@example.net>"), TO)
    _, rcpt_tos, data = await relay.next_message()  # the second try went through
    ack = email.message_from_bytes(data, policy=policy.default)
    assert rcpt_tos == ["ivan@example.net"] and relay.refused == 1
    [registered] = await registry_of(client).list_messages()
    assert registered.registration_number in ack["Subject"]

    relay.refusals = ["554 5.7.1 Message rejected by policy"]
    await smtp_send(adapter.port, make_mail("Вторая жалоба: счёт за телефон.", message_id="<two@example.net>"), TO)
    await adapter.drain()  # the refused one is not waiting to be sent again: it was given up at once
    assert relay.refused == 2 and relay.messages.qsize() == 0
    metrics = await (await client.get("/metrics")).text()
    for result, count in (("sent", 1), ("retried", 1), ("failed", 1)):
        assert f'complaint_gateway_acknowledgements_total{{channel="email",result="{result}"}} {count}.0' in metrics
