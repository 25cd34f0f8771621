"""The Complaint record's JSON: what the registry stores and the queue carries."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.schema import Attachment, Complaint, Customer, Identity, SubmittedBy


def full_complaint(text: str, name: str) -> Complaint:
    return Complaint(
        id="c1", channel="web_form", channel_message_id="key:\"quoted\"\\slash", received_at="2026-03-10T09:00:00.123456Z",
        customer=Customer(customer_id=None, name=name, identities=[Identity("phone", "+79161234567"), Identity("email", "a@b.ru")]),
        text=text, registration_number="2026-000001", reply_to=Identity("email", "a@b.ru"), subject="Тема\u2028строка",
        language="ru", attachments=[Attachment("счёт.pdf", "application/pdf", 1234, "ab" * 32)],
        urgency="high", in_reply_to=None, submitted_by=SubmittedBy("ombudsman", "Rzecznik", None),
        deadlines={"acknowledge": "2026-03-10T17:00:00Z"}, auto_submitted=False,
        meta={"form_language": "ru", "numbers": [1, 2.5, None, True], "nested": {"k": "v"}})


@settings(max_examples=200)
@given(st.text(st.characters(blacklist_categories=["Cs"])), st.text(st.characters(blacklist_categories=["Cs"]), max_size=20))
def test_to_json_is_the_compact_standard_json_of_the_record(text: str, name: str) -> None:
    complaint = full_complaint(text, name)
    expected = json.dumps(complaint.to_dict(), ensure_ascii=False, separators=(",", ":"))
    assert complaint.to_json() == expected
    again = Complaint.from_json(complaint.to_json())
    assert again == complaint
