"""The IMAP door against a real private Dovecot on loopback: IDLE and polling, the UID
cursor, \\Seen and move-to-folder after delivery, bad messages, failures, the poll lock."""
from __future__ import annotations

import pytest

from tests.conftest import registry_of
from tests.test_email_support import adapter_of, dovecot_fixture, make_mail, wait_until  # noqa: F401


def _seen(dovecot, user, folder="INBOX"):
    client = dovecot.client(user)
    try:
        client.select_folder(folder, readonly=True)
        flags = client.get_flags(client.search(["ALL"]))
        return {uid: b"\\Seen" in f for uid, f in flags.items()}
    finally:
        client.logout()


async def _queue(client):
    return await registry_of(client).queue_length()


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "polling"])
async def test_unread_mail_is_registered_then_marked_seen(idle, dovecot, make_config, start_gateway):
    dovecot.append("box1", make_mail("Нет интернета третий день.", message_id="<a1@example.net>"))
    dovecot.append("box1", make_mail("Счёт за май пришёл дважды.", sender="anna@example.org", message_id="<a2@example.net>"))
    client = await start_gateway(make_config(channels={"box": dovecot.settings("box1", idle=idle)}))
    await wait_until(lambda: _count_is(client, 2), what="two registrations")
    await wait_until(lambda: _seen(dovecot, "box1") == {1: True, 2: True}, what="both marked seen")
    adapter = adapter_of(client, "box")
    assert adapter.poll_interval == (0.0 if idle else 0.2)
    # a mail arriving later is picked up too (by IDLE, or by the next poll)
    dovecot.append("box1", make_mail("Ещё: телефон не работает.", sender="petr@example.com"))
    await wait_until(lambda: _count_is(client, 3), what="the third registration")

    async def cursor_at_3():  # the cursor moves right after the message is marked, never before delivery
        return await registry_of(client).get_cursor(f"cursor:{adapter.mailbox}") == f"{adapter.uidvalidity}:3"

    await wait_until(cursor_at_3, what="the cursor")


async def _count_is(client, n):
    return await _queue(client) == n


async def test_cursor_survives_a_restart_and_nothing_is_reprocessed(dovecot, make_config, start_gateway):
    config = make_config(channels={"box": dovecot.settings("box1")})
    dovecot.append("box1", make_mail("Первое письмо о проблеме."))
    first = await start_gateway(config)
    await wait_until(lambda: _count_is(first, 1))
    await first.close()
    imap = dovecot.client("box1")  # someone marks it unread again: the cursor still knows it was handled
    imap.select_folder("INBOX")
    imap.remove_flags([1], [b"\\Seen"])
    imap.logout()
    dovecot.append("box1", make_mail("Второе письмо.", sender="olga@example.org"))
    second = await start_gateway(config)
    await wait_until(lambda: _count_is(second, 2))
    messages = await registry_of(second).list_messages()
    assert len(messages) == 2


async def test_handled_mail_is_moved_to_the_configured_folder(dovecot, make_config, start_gateway):
    dovecot.append("box1", make_mail())
    client = await start_gateway(make_config(channels={"box": dovecot.settings("box1", move_to="Registered")}))
    await wait_until(lambda: _count_is(client, 1))
    await wait_until(lambda: _seen(dovecot, "box1") == {}, what="the inbox to be empty")
    assert list(_seen(dovecot, "box1", "Registered").values()) == [True]


async def test_a_bad_message_does_not_block_the_ones_after_it(dovecot, make_config, start_gateway):
    dovecot.append("box1", b"X-Nothing: here\r\n\r\n")  # no sender, no subject, no text: a dead letter
    dovecot.append("box1", make_mail("Письмо после плохого.", sender="good@example.org"))
    client = await start_gateway(make_config(channels={"box": dovecot.settings("box1")}))
    await wait_until(lambda: _count_is(client, 1))
    await wait_until(lambda: _seen(dovecot, "box1") == {1: True, 2: True}, what="both marked seen")
    registry = registry_of(client)
    dead = await registry.list_dead_letters()
    assert len(dead) == 1 and dead[0]["record"]["meta"]["email"]["envelope"]["uid"] == 1


async def test_registry_failure_leaves_the_message_unread_and_retries(dovecot, make_config, start_gateway):
    client = await start_gateway(make_config(channels={"box": dovecot.settings("box1")}))
    registry = registry_of(client)
    real_submit = registry.submit_many
    calls = []

    async def broken_submit(complaints, plans=None):
        calls.extend(complaints)
        raise ConnectionError("database is down")

    registry.submit_many = broken_submit
    dovecot.append("box1", make_mail())
    await wait_until(lambda: len(calls) >= 2, what="retries")
    assert _seen(dovecot, "box1") == {1: False}
    assert await registry.get_cursor(f"cursor:{adapter_of(client, 'box').mailbox}") is None
    registry.submit_many = real_submit
    await wait_until(lambda: _count_is(client, 1))
    await wait_until(lambda: _seen(dovecot, "box1") == {1: True})


async def test_only_one_gateway_polls_a_mailbox(dovecot, make_config, start_gateway, redis_url):
    config = make_config(backend="redis", channels={"box": dovecot.settings("box1", lock_ttl_seconds=30)})
    one = await start_gateway(config)
    two = await start_gateway(config)
    a, b = adapter_of(one, "box"), adapter_of(two, "box")
    await wait_until(lambda: a.has_lock or b.has_lock, what="a poller")
    holder, other = (a, b) if a.has_lock else (b, a)
    assert not other.has_lock
    dovecot.append("box1", make_mail())
    await wait_until(lambda: _count_is(one, 1))
    await (one if holder is a else two).close()  # the holder stops and releases the lock
    await wait_until(lambda: other.has_lock, what="the other gateway to take over")
    dovecot.append("box1", make_mail("Новое письмо после смены.", sender="n@example.org"))
    await wait_until(lambda: _count_is(one if other is a else two, 2))


async def test_same_mail_in_two_mailboxes_is_one_registration(dovecot, make_config, start_gateway):
    raw = make_mail("Одно письмо на два адреса компании.", message_id="<twice@example.net>")
    dovecot.append("box1", b"Delivered-To: box1@operator.example\r\n" + raw)
    dovecot.append("box2", b"Delivered-To: box2@operator.example\r\n" + raw)
    client = await start_gateway(make_config(channels={"box1": dovecot.settings("box1"), "box2": dovecot.settings("box2")}))
    registry = registry_of(client)
    await wait_until(lambda: _seen(dovecot, "box1") == {1: True} and _seen(dovecot, "box2") == {1: True})
    messages = await registry.list_messages()
    assert len(messages) == 2
    numbers = {m.registration_number for m in messages}
    assert len(numbers) == 1
    assert sorted(e.event for e in await registry.read_events("t", "c", count=10)) == ["new", "repeat"]
    assert [m.meta.get("received_in_other_mailbox", False) for m in messages].count(True) == 1
