"""Calls out of the gateway go through the proxy the environment names (HTTP_PROXY,
HTTPS_PROXY, ALL_PROXY, NO_PROXY), the same for every door: each door's platform calls,
downloads and callbacks are sent through a real forward proxy on loopback to the fakes."""
from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from channels.phone.fakes.twilio_api import FakeTwilioApi
from channels.social.fakes import ok as ok_events
from channels.social.fakes import telegram as tg
from channels.social.fakes import vk as vk_events
from channels.social.fakes.ok import FakeOk
from channels.social.fakes.telegram import FakeTelegram
from channels.social.fakes.testing import wait_until
from channels.social.fakes.vk import FakeVk
from gateway.app import ADAPTERS
from gateway.outbound import proxy_arguments, proxy_of_origin
from gateway.testing.plugin import base_config
from gateway.testing.servers import ForwardProxy, free_port
from normalizer.schema import Complaint
from tests.conftest import registry_of
from tests.test_partner_api import CASE, KEY_RPO, auth, callback_server, partner_with_callback
from tests.test_phone_twilio_sms import ACCOUNT_SID, AUTH_TOKEN, SENDER_E164, TWILIO_NUMBER, inbound_sms, send, sms_channel
from tests.test_social_ok import PATH as OK_PATH
from tests.test_social_ok import ok_channel
from tests.test_social_telegram import HEADERS as TG_HEADERS
from tests.test_social_telegram import PATH as TG_PATH
from tests.test_social_telegram import tg_channel
from tests.test_social_vk import GROUP, longpoll_channel

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.filterwarnings("ignore:Please use 'Bot.sendMessage':telegram.warnings.PTBUserWarning"),
              pytest.mark.filterwarnings("ignore:Please use 'Bot.getUpdates':telegram.warnings.PTBUserWarning")]

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                   "no_proxy")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A clean proxy environment, read afresh by the gateway; ``set(**variables)`` sets some."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    proxy_of_origin.cache_clear()

    def set_variables(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        proxy_of_origin.cache_clear()

    yield set_variables
    proxy_of_origin.cache_clear()


@pytest.fixture
async def proxy(environment: Any) -> AsyncIterator[ForwardProxy]:
    """A forward proxy that wants credentials, named by HTTP_PROXY with them."""
    server = ForwardProxy(credentials=("gateway", "s3cret/pass"))
    url = await server.start()
    environment(HTTP_PROXY=url.replace("http://", "http://gateway:s3cret%2Fpass@"))
    yield server
    await server.stop()


def paths(proxy: ForwardProxy) -> list[str]:
    """The paths the proxy forwarded (with their query), each sent with the proxy's credentials."""
    assert all(user == "gateway" for _, _, user in proxy.seen), proxy.seen
    return [url.split("/", 3)[3] for _, url, _ in proxy.seen]


# -- which proxy, for which address --------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://api.telegram.org/bot1:x/sendMessage", "http://api.telegram.org/x", "https://api.vk.ru/method/users.get",
    "https://10.1.2.3/a", "https://cdn.internal:8443/x?y=1", "https://other.internal/x", "https://api.twilio.com:443/x",
    "https://api.ok.ru/graph/me/messages/chat:C1",
])
def test_the_proxy_for_an_address_is_the_one_requests_chooses(environment, url):
    environment(HTTPS_PROXY="http://user:p%40ss@proxy.corp:3128", http_proxy="http://plain.corp:8080",
                NO_PROXY="api.vk.ru, 10.0.0.0/8, cdn.internal:8443, api.twilio.com")
    chosen = requests.Session().merge_environment_settings(url, {}, None, None, None)["proxies"]
    expected = requests.utils.select_proxy(url, chosen)
    arguments = proxy_arguments(url)
    assert (str(arguments["proxy"]) if arguments else None) == expected
    if expected == "http://user:p%40ss@proxy.corp:3128":  # the credentials stay in the URL, aiohttp sends them
        assert (arguments["proxy"].user, arguments["proxy"].password) == ("user", "p@ss")


def test_proxies_are_chosen_by_scheme_and_no_proxy_hosts_go_direct(environment):
    environment(HTTPS_PROXY="http://user:p%40ss@proxy.corp:3128", http_proxy="http://plain.corp:8080",
                NO_PROXY="api.vk.ru, 10.0.0.0/8, cdn.internal:8443, api.twilio.com")
    chosen = {url: str(proxy_arguments(url).get("proxy")) for url in (
        "https://api.telegram.org/x", "http://api.telegram.org/x", "https://api.vk.ru/x", "https://10.1.2.3/a",
        "https://cdn.internal:8443/x", "https://cdn.internal/x", "https://api.twilio.com:443/x")}
    assert chosen == {"https://api.telegram.org/x": "http://user:p%40ss@proxy.corp:3128",
                      "http://api.telegram.org/x": "http://plain.corp:8080", "https://api.vk.ru/x": "None",
                      "https://10.1.2.3/a": "None", "https://cdn.internal:8443/x": "None",
                      "https://cdn.internal/x": "http://user:p%40ss@proxy.corp:3128", "https://api.twilio.com:443/x": "None"}


def test_all_proxy_covers_every_scheme_and_a_star_in_no_proxy_covers_every_host(environment):
    environment(ALL_PROXY="http://all.corp:3128")
    assert str(proxy_arguments("https://api.telegram.org/x")["proxy"]) == "http://all.corp:3128"
    assert str(proxy_arguments("http://callbacks.example/hook")["proxy"]) == "http://all.corp:3128"
    environment(NO_PROXY="*")
    assert proxy_arguments("https://api.telegram.org/x") == {}
    assert proxy_arguments("not a url") == {}


def test_the_environment_is_read_once_per_scheme_and_host(environment, monkeypatch):
    environment(HTTPS_PROXY="http://proxy.corp:3128")
    reads: list[str] = []
    real = requests.utils.get_environ_proxies
    monkeypatch.setattr("gateway.outbound.get_environ_proxies", lambda url: reads.append(url) or real(url))
    for path in ("sendMessage", "getFile", "sendMessage?x=1"):
        assert str(proxy_arguments(f"https://api.telegram.org/bot1:x/{path}")["proxy"]) == "http://proxy.corp:3128"
    proxy_arguments("https://api.telegram.org:8443/x")
    proxy_arguments("http://api.telegram.org/x")
    assert reads == ["https://api.telegram.org/", "https://api.telegram.org:8443/", "http://api.telegram.org/"]


# -- every door's calls out ------------------------------------------------------------------

async def test_telegram_acknowledgement_goes_through_the_proxy_and_direct_where_no_proxy_says(
        proxy, environment, make_config, start_gateway):
    async with FakeTelegram() as fake:
        client = await start_gateway(make_config(channels=tg_channel(fake)))
        ann = tg.user(777001, "Ann", "Lee", language_code="en")
        resp = await client.post(TG_PATH, json=tg.message_update(1, ann, text="No internet since Monday."), headers=TG_HEADERS)
        assert resp.status == 200
        [sent] = await fake.wait_for("sendMessage")
        [event] = await registry_of(client).read_events("test", "c1")
        assert event.registration_number in sent.params["text"]
        assert paths(proxy) == [f"bot{fake.token}/sendMessage"]

    environment(NO_PROXY="127.0.0.1")  # read again at the next start
    async with FakeTelegram() as fake:
        client = await start_gateway(make_config(channels=tg_channel(fake)))
        resp = await client.post(TG_PATH, json=tg.message_update(2, ann, text="Still no internet."), headers=TG_HEADERS)
        assert resp.status == 200
        await fake.wait_for("sendMessage")
    assert len(proxy.seen) == 1


async def test_a_proxy_refusing_the_credentials_fails_the_acknowledgement_as_the_platform_would(
        proxy, environment, make_config, start_gateway):
    environment(HTTP_PROXY=proxy.url.replace("http://", "http://gateway:wrong@"))
    async with FakeTelegram() as fake:
        client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements={"retry": {"attempts": 1}}))
        ann = tg.user(777002, "Ann", "Lee", language_code="en")
        resp = await client.post(TG_PATH, json=tg.message_update(3, ann, text="No internet since Monday."), headers=TG_HEADERS)
        assert resp.status == 200  # registered: the acknowledgement is a separate call

        async def failed() -> bool:
            metrics = await (await client.get("/metrics")).text()
            return 'complaint_gateway_acknowledgements_total{channel="telegram",result="failed"} 1.0' in metrics

        await wait_until(failed)
        assert fake.calls_of("sendMessage") == []
        events: list[str] = []

        async def recorded() -> bool:  # registered, and the acknowledgement given up on recorded on it
            events.extend(e.event for e in await registry_of(client).read_events("test", "c1"))
            return len(events) >= 2

        await wait_until(recorded)
        assert events == ["new", "acknowledgement_failed"]
    assert [user for _, _, user in proxy.seen] == [None]  # refused with 407


async def test_ok_answer_and_attachment_download_go_through_the_proxy(proxy, make_config, start_gateway):
    async with FakeOk() as ok:
        client = await start_gateway(make_config(channels=ok_channel(ok)))
        image = ok.add_file("meter.jpg", b"\xff\xd8\xff meter", "image/jpeg")
        event = ok_events.message_created("user:575662066926", "chat:C3ecb9d02a600", "Счётчик врёт, фото прилагаю.",
                                          name="Мария", attachments=[ok_events.image_attachment(image)])
        assert (await client.post(OK_PATH, json=event)).status == 200
        await ok.wait_for("messages")
        [new] = await registry_of(client).read_events("test", "c1")
        assert new.payload["complaint"]["attachments"][0]["size"] == len(b"\xff\xd8\xff meter")
    forwarded = paths(proxy)
    assert any(path.endswith("meter.jpg") for path in forwarded)
    assert any(path.startswith("graph/me/messages/chat:C3ecb9d02a600") for path in forwarded), forwarded


async def test_vk_long_poll_and_its_api_calls_go_through_the_proxy(proxy, make_config, start_gateway):
    async with FakeVk(group_id=GROUP) as vk:
        vk.users[5550001] = ("Иван", "Петров")
        client = await start_gateway(make_config(channels=longpoll_channel(vk)))
        await vk.wait_for("groups.getLongPollServer")
        await vk.push_update(vk_events.message_new(GROUP, 5550001, "Нет горячей воды в квартире."))
        [send_call] = await vk.wait_for("messages.send")
        [new] = await registry_of(client).read_events("test", "c1")
        assert new.registration_number in send_call.params["message"]
    forwarded = paths(proxy)
    assert any(path.startswith("method/groups.getLongPollServer") for path in forwarded)  # vk-api, through requests
    assert any("act=a_check" in path for path in forwarded)  # the long poll itself, through aiohttp


@pytest.fixture
async def twilio_api() -> AsyncIterator[FakeTwilioApi]:
    api = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    await api.start()
    yield api
    await api.close()


async def test_twilio_rest_calls_go_through_the_proxy(proxy, twilio_api, make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel(api_base_url=twilio_api.base_url)))
    await send(client, inbound_sms("Интернет пропадает каждый вечер после 20:00."))
    [event] = await registry_of(client).read_events("test", "c1")
    await client.server.app[ADAPTERS]["sms"].send_reply(Complaint.from_dict(event.payload["complaint"]), "Мастер придёт.")
    assert twilio_api.sent_messages == [{"To": SENDER_E164, "From": TWILIO_NUMBER, "Body": "Мастер придёт."}]
    assert paths(proxy) == [f"2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"]


async def test_partner_callback_goes_through_the_proxy(proxy, make_config, start_gateway):
    received = asyncio.Event()

    async def callback(request: web.Request) -> web.Response:
        received.set()
        return web.Response(status=204)

    async with callback_server(callback) as url:
        client = await start_gateway(make_config(channels=partner_with_callback(url)))
        resp = await client.post("/partners/cases", json=CASE, headers=auth(KEY_RPO))
        assert resp.status in (200, 201)
        await asyncio.wait_for(received.wait(), timeout=10)
    assert paths(proxy) == ["hook"]


# -- https through the proxy's tunnel, with the company's own certificate authority ---------------

def _certificates(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate authority (its certificate in ``ca.pem``) and a server context for 127.0.0.1 it signed:
    a TLS-inspecting company proxy's, or a platform's, as far as the gateway can tell."""
    now = datetime.now(UTC)

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
                    ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Company Root CA", ca_key, "Company Root CA", ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, "Company Root CA", ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", context


@asynccontextmanager
async def gateway_process(folder: Path, channels: dict[str, Any], environment: dict[str, str]) -> AsyncIterator[str]:
    """A gateway process with its own environment (a TLS context's certificate authorities are
    read when the process starts); yields its base URL."""
    port = free_port()
    config = base_config(folder, channels=channels, acknowledgements={"retry": {"attempts": 1}})
    config["http"] = {"host": "127.0.0.1", "port": port, "shutdown_timeout_seconds": 5}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    env = {name: value for name, value in os.environ.items() if name not in PROXY_VARIABLES and name != "SSL_CERT_FILE"}
    with open(folder / "gateway.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(folder / "config.yaml"), "run"],
                                cwd=ROOT, env={**env, **environment}, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "Traceback" not in (folder / "gateway.log").read_text(errors="replace")


def logged(folder: Path) -> str:
    return (folder / "gateway.log").read_text(errors="replace")


async def _metric(base: str, line: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as resp:
        return line in await resp.text()


@pytest.mark.parametrize("trusted", [True, False])
async def test_https_goes_through_the_proxys_tunnel_and_trusts_the_authority_named_by_ssl_cert_file(
        tmp_path, trusted, environment):
    ca_file, server_context = _certificates(tmp_path)
    proxy = ForwardProxy(credentials=("gateway", "s3cret/pass"))
    proxy_url = (await proxy.start()).replace("http://", "http://gateway:s3cret%2Fpass@")
    fake = FakeTelegram()
    fake.ssl_context = server_context
    await fake.start()
    assert fake.base_url.startswith("https://")
    variables = {"HTTPS_PROXY": proxy_url, **({"SSL_CERT_FILE": str(ca_file)} if trusted else {})}
    try:
        async with gateway_process(tmp_path, tg_channel(fake), variables) as base, aiohttp.ClientSession() as session:
            update = tg.message_update(77, tg.user(777003, "Ann", "Lee", language_code="en"), text="No internet since Monday.")
            async with session.post(base + TG_PATH, json=update, headers=TG_HEADERS) as resp:
                assert resp.status == 200
            if trusted:
                [sent] = await fake.wait_for("sendMessage")
                assert sent.params["chat_id"] in (777003, "777003")
                await wait_until(lambda: _metric(base, 'acknowledgements_total{channel="telegram",result="sent"} 1.0'))
            else:  # the platform's certificate is not trusted: nothing reaches it, the acknowledgement fails
                await wait_until(lambda: _metric(base, 'acknowledgements_total{channel="telegram",result="failed"} 1.0'))
                assert fake.calls_of("sendMessage") == []
    finally:
        await fake.close()
        await proxy.stop()
    port = fake.url.rsplit(":", 1)[1]
    assert ("CONNECT", f"127.0.0.1:{port}", "gateway") in proxy.seen
    assert all(method == "CONNECT" for method, _, _ in proxy.seen)  # nothing in clear text
    if not trusted:  # the failure is logged with the proxy's address, never its password
        assert "ClientConnectorCertificateError" in logged(tmp_path) and "gateway:***@127.0.0.1" in logged(tmp_path)
    assert "s3cret" not in logged(tmp_path)
