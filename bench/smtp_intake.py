"""SMTP intake: the gateway's ``smtp`` door against a bare aiosmtpd server whose handler only
parses the mail with the standard library and answers 250; one load generator for both.

The load generator is a separate process (``python bench/smtp_intake.py load PORT K M``):
K threads, each with one smtplib connection sending M real-looking mails of about 2 KB
(text and HTML alternatives, an encoded subject, trace headers, a unique Message-ID, a distinct
sender each). It prints msgs/s and the per-mail latency as JSON.
``python bench/smtp_intake.py bare PORT`` is the bare server.
"""
from __future__ import annotations

import asyncio
import email
import html
import json
import smtplib
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from common import ROOT, Contender, Server, against, compare, free_port, gateway, process, row

RECIPIENT = "complaints@example.com"

BODIES = {
    "ru": ("Здравствуйте!\n\nУже третий день у меня не работает домашний интернет по договору {n}. Роутер показывает, "
           "что линия есть, но страницы не открываются, скорость по тесту ноль. Я перезагружал оборудование, проверял "
           "кабель и звонил на горячую линию, но оператор только предложил подождать. За этот месяц я заплатил полностью "
           "и прошу сделать перерасчёт за дни без связи. Кроме того, в прошлом месяце мне дважды списали абонентскую "
           "плату, хотя услуга была одна. Прошу разобраться, вернуть лишние деньги и сообщить срок восстановления "
           "связи. Ответ прошу прислать на этот адрес.\n"),
    "pl": ("Dzień dobry,\n\nod trzech dni nie działa mi internet stacjonarny (umowa nr {n}). Modem pokazuje, że linia "
           "jest aktywna, ale żadna strona się nie otwiera, a test prędkości pokazuje zero. Restartowałem urządzenie, "
           "sprawdzałem kabel i dzwoniłem na infolinię, ale konsultant poprosił tylko o cierpliwość. Za ten miesiąc "
           "zapłaciłem w całości i proszę o korektę faktury za dni bez usługi. Dodatkowo w zeszłym miesiącu opłata "
           "abonamentowa została pobrana dwa razy. Proszę o wyjaśnienie, zwrot nadpłaty i informację, kiedy usługa "
           "zostanie przywrócona. Odpowiedź proszę przesłać na ten adres.\n"),
    "en": ("Hello,\n\nmy home broadband (contract {n}) has not worked for three days now. The router shows the line "
           "as up, but no page opens and a speed test shows zero. I restarted the equipment, checked the cable and "
           "called your hotline, where I was only asked to be patient. I paid this month in full and ask for a credit "
           "for the days without service. Also, last month the monthly fee was charged twice although I have one "
           "service. Please look into it, refund the overpayment and tell me when the service will be restored. "
           "Please answer to this address.\n"),
}
SUBJECTS = {"ru": "Жалоба: нет интернета третий день", "pl": "Reklamacja: brak internetu od trzech dni",
            "en": "Complaint: no internet for three days"}
NAMES = {"ru": "Иван Петров", "pl": "Katarzyna Nowak", "en": "John Smith"}


def mail(n: int, run: str) -> tuple[str, bytes]:
    """One distinct complaint mail (about 2 KB) and its sender."""
    lang = ("ru", "pl", "en")[n % 3]
    sender = f"customer.{run}.{n}@example.net"
    msg = EmailMessage()
    msg["Received"] = (f"from mx{n % 5}.example.net (mx{n % 5}.example.net [192.0.2.{n % 250 + 1}]) by mail.example.com "
                       f"with ESMTPS id {uuid.uuid4().hex[:12]} for <{RECIPIENT}>; {format_datetime(datetime.now(UTC))}")
    msg["From"] = formataddr((NAMES[lang], sender))
    msg["To"] = RECIPIENT
    msg["Subject"] = SUBJECTS[lang]
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{uuid.uuid4().hex}.{n}@example.net>"
    msg["User-Agent"] = "Mozilla/5.0 Thunderbird/115.5.0"
    text = BODIES[lang].format(n=f"{run}-{n}")
    body = "\n\n".join(textwrap.fill(part, 72) for part in text.split("\n\n"))  # as mail programs wrap
    body += f"\n-- \n{NAMES[lang]}\n+7 916 {n % 10_000_000:07d}\n"
    msg.set_content(body, charset="utf-8", cte="8bit")
    paragraphs = "\n".join(f"<p>{textwrap.fill(html.escape(part), 76)}</p>" for part in text.split("\n\n"))
    msg.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html", charset="utf-8", cte="8bit")
    return sender, msg.as_bytes(policy=default_policy.clone(linesep="\r\n"))


# -- the load generator (its own process) ------------------------------------------------
def load(port: int, connections: int, per_connection: int) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    mails = [[mail(c * per_connection + i, run) for i in range(per_connection)] for c in range(connections)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(connections + 1)

    def client(batch: list[tuple[str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.ehlo("load.example.net")
            start.wait()
            mine = []
            for sender, data in batch:
                began = time.perf_counter()
                try:
                    smtp.sendmail(sender, [RECIPIENT], data)
                except smtplib.SMTPException:
                    with lock:
                        errors[0] += 1
                mine.append((time.perf_counter() - began) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(batch,)) for batch in mails]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    sent = connections * per_connection
    return {"msgs_per_s": sent / elapsed, "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)], "errors": float(errors[0]), "mails": float(sent)}


# -- the bare server (its own process) ---------------------------------------------------
class BareHandler:
    """Parses with the standard library, answers 250: the floor of any SMTP door in Python."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        email.message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        return "250 2.0.0 OK"


def bare(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(BareHandler(), enable_SMTPUTF8=True, decode_data=False,
                                                       data_size_limit=25 * 1024 * 1024, hostname="bare.example.com"),
                                          "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# -- the benchmark -----------------------------------------------------------------------
def wait_smtp(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(3) == b"220":
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no SMTP server on port {port}")


def run_load(server: Server, connections: int, per_connection: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "load", str(server.port), str(connections), str(per_connection)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    figures: dict[str, float] = json.loads(out)
    figures["rps"] = figures["msgs_per_s"]  # compare() ranks runs by "rps"
    figures["requests"] = figures.pop("mails")
    return figures


def contender(name: str, server: Server, connections: int, per_connection: int) -> Contender:
    return Contender(name, server.pid, lambda: run_load(server, connections, per_connection),
                     # imports, and the language models the first mail of each language loads
                     warm_up=lambda: run_load(server, connections, 3))


def smtp_channel(port: int) -> dict[str, Any]:
    """The ``smtp`` door as docs/channels/email.md sets it up; no ``relay:``, so no
    acknowledgement mail is sent (that happens after the 250 anyway)."""
    return {"email": {"adapter": "smtp", "host": "127.0.0.1", "port": port, "recipients": [RECIPIENT],
                      "hostname": "mail.example.com"}}


def bare_side(stack: ExitStack, connections: int = 16, per_connection: int = 60) -> Contender:
    """The bare aiosmtpd server (its own process until ``stack`` closes), loaded as ``make bench`` loads it."""
    port = free_port()
    proc = stack.enter_context(process([sys.executable, __file__, "bare", str(port)], ready=lambda: wait_smtp(port)))
    return contender("smtp: bare aiosmtpd + stdlib parse", Server(port, proc.pid), connections, per_connection)


def door_side(stack: ExitStack, name: str, backend: str, connections: int = 16, per_connection: int = 60,
              flush: bool = False, source: Path = ROOT) -> Contender:
    """A gateway with the SMTP door, run from the code in ``source``, loaded as ``make bench`` loads it."""
    smtp_port = free_port()
    server = stack.enter_context(gateway(backend, channels=smtp_channel(smtp_port), flush=flush, source=source))
    wait_smtp(smtp_port)
    return contender(name, Server(smtp_port, server.pid), connections, per_connection)


def run(connections: int = 16, per_connection: int = 60) -> list[dict[str, Any]]:
    with ExitStack() as stack:
        sides = [bare_side(stack, connections, per_connection)]
        sides += [door_side(stack, f"smtp: gateway smtp door, {backend}, 1 process", backend, connections, per_connection,
                            flush=backend == "redis") for backend in ("redis", "sqlite")]
        compare(sides)
    bare, doors = sides[0], sides[1:]
    return [_row(bare.name, bare.best())] + [_row(s.name, against(s, bare)) for s in doors]


def _row(name: str, figures: dict[str, float]) -> dict[str, Any]:
    figures = dict(figures)
    figures.pop("rps")
    return row(name, figures)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        print(json.dumps(load(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    elif sys.argv[1] == "bare":
        bare(int(sys.argv[2]))
