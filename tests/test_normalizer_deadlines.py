"""Deadlines on the business calendar: weekends, public holidays, working hours, time zones, DST."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.config import ConfigError
from gateway.inbound import Inbound
from normalizer.calendar import BusinessCalendar
from normalizer.pipeline import Normalizer, NormalizerSettings

MOSCOW = {"timezone": "Europe/Moscow", "default_region": "RU"}
WARSAW = {"timezone": "Europe/Warsaw", "default_region": "PL"}


def deadlines(received: datetime, text: str = "Прошу пересчитать счёт за январь", **section: Any) -> tuple[dict[str, str], dict[str, Any]]:
    settings = NormalizerSettings.from_config(section)
    inbound = Inbound(channel="test", message_id="m1", text=text, received_at=received)
    complaint = Normalizer(settings).normalize(inbound)
    return complaint.deadlines, complaint.meta


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_friday_afternoon_runs_over_the_weekend() -> None:
    # Friday 13 March 2026, 16:00 in Moscow (13:00 UTC)
    due, meta = deadlines(utc(2026, 3, 13, 13, 0), **MOSCOW)
    assert due == {
        "acknowledge": "2026-03-16T12:00:00Z",  # 2 h on Friday + 6 h on Monday from 09:00 -> 15:00 MSK
        "technical": "2026-03-16T13:00:00Z",    # 72 h of clock time
        "respond": "2026-03-20T15:00:00Z",      # 5th working day after Friday, close of business 18:00 MSK
        "legal": "2026-05-12T20:59:59Z",        # 60 calendar days, end of day MSK
    }
    assert meta["timezone"] == "Europe/Moscow"


def test_russian_new_year_holidays_are_skipped() -> None:
    # 2 January 2026, 12:00 MSK: 1-8 January are holidays and 9 January a transferred day off
    due, _ = deadlines(utc(2026, 1, 2, 9, 0), **MOSCOW)
    assert due["acknowledge"] == "2026-01-12T14:00:00Z"  # Monday 12 January, 09:00 + 8 h = 17:00 MSK
    assert due["respond"] == "2026-01-16T15:00:00Z"


def test_a_working_saturday_from_a_holiday_swap_counts() -> None:
    # Saturday 1 November 2025 was a working day in Russia, Monday 3 November a day off
    due, _ = deadlines(utc(2025, 10, 31, 14, 0), **MOSCOW)  # Friday 17:00 MSK
    assert due["acknowledge"] == "2025-11-01T13:00:00Z"  # 1 h on Friday + 7 h on Saturday = 16:00 MSK


def test_polish_independence_day_is_skipped() -> None:
    # Tuesday 10 November 2026, 17:00 in Warsaw (16:00 UTC); 11 November is a public holiday
    due, meta = deadlines(utc(2026, 11, 10, 16, 0), text="Reklamacja faktury za październik", **WARSAW)
    assert due["acknowledge"] == "2026-11-12T15:00:00Z"  # 1 h Tuesday + 7 h Thursday = 16:00 CET
    assert due["respond"] == "2026-11-18T17:00:00Z"      # Thu, Fri, Mon, Tue, Wed at 18:00 CET
    assert meta["timezone"] == "Europe/Warsaw"


@pytest.mark.parametrize(("received", "acknowledge"), [
    (utc(2026, 3, 14, 0, 0), "2026-03-16T14:00:00Z"),   # Saturday 03:00 MSK -> Monday 17:00 MSK
    (utc(2026, 3, 16, 4, 0), "2026-03-16T14:00:00Z"),   # Monday 07:00 MSK, before opening -> same day 17:00
    (utc(2026, 3, 16, 17, 0), "2026-03-17T14:00:00Z"),  # Monday 20:00 MSK, after closing -> Tuesday 17:00
])
def test_time_outside_working_hours_does_not_count(received: datetime, acknowledge: str) -> None:
    assert deadlines(received, **MOSCOW)[0]["acknowledge"] == acknowledge


def test_dst_in_warsaw_spring_forward() -> None:
    # Friday 27 March 2026, 17:00 CET (16:00 UTC); clocks go forward on Sunday 29 March
    due, _ = deadlines(utc(2026, 3, 27, 16, 0), text="Reklamacja faktury", **WARSAW)
    assert due["acknowledge"] == "2026-03-30T14:00:00Z"  # 1 h Friday + 7 h Monday = 16:00 CEST (UTC+2)
    assert due["technical"] == "2026-03-30T16:00:00Z"    # 72 elapsed hours: 18:00 on the wall clock
    assert due["legal"] == "2026-05-26T21:59:59Z"        # end of 26 May, CEST


def test_dst_in_warsaw_fall_back() -> None:
    # Saturday 24 October 2026, 12:00 CEST (10:00 UTC); clocks go back on Sunday 25 October
    due, _ = deadlines(utc(2026, 10, 24, 10, 0), text="Reklamacja faktury", **WARSAW)
    assert due["technical"] == "2026-10-27T10:00:00Z"    # 11:00 CET
    assert due["acknowledge"] == "2026-10-26T16:00:00Z"  # Monday 09:00 + 8 h = 17:00 CET


def test_immediate_urgency_shortens_deadlines() -> None:
    due, meta = deadlines(utc(2026, 3, 14, 0, 0), text="Пахнет газом в подъезде", **MOSCOW)  # Saturday night
    assert due["acknowledge"] == "2026-03-14T01:00:00Z" and due["respond"] == "2026-03-15T00:00:00Z"
    assert due["technical"] == "2026-03-15T00:00:00Z" and due["legal"] == "2026-05-13T20:59:59Z"
    assert meta["deadlines_overridden"] == ["acknowledge", "respond", "technical"]


def test_configured_policies_merge_with_the_defaults() -> None:
    section = {**MOSCOW, "deadlines": {
        "policies": {"acknowledge": {"working_hours": 4}, "technical": None, "legal": {"calendar_days": 30, "roll_to_working_day": True}},
        "overrides": {"immediate": {"respond": {"calendar_days": 30}}, "high": {"acknowledge": {"hours": 2}}},
    }}
    due, _ = deadlines(utc(2026, 3, 13, 13, 0), **section)
    assert set(due) == {"acknowledge", "respond", "legal"}
    assert due["acknowledge"] == "2026-03-16T08:00:00Z"  # 2 h Friday + 2 h Monday = 11:00 MSK
    assert due["legal"] == "2026-04-13T20:59:59Z"        # 12 April is a Sunday: rolled to Monday 13 April
    urgent, meta = deadlines(utc(2026, 3, 13, 13, 0), text="Пахнет газом", **section)
    assert urgent["respond"] == due["respond"]            # an override never makes a deadline later
    assert "respond" not in meta.get("deadlines_overridden", [])
    high, _ = deadlines(utc(2026, 3, 13, 13, 0), text="Нет интернета с утра", **section)
    assert high["acknowledge"] == "2026-03-13T15:00:00Z"


def test_lunch_breaks_and_company_days_off() -> None:
    section = {**MOSCOW, "calendar": {"working_hours": ["09:00-13:00", "14:00-18:00"], "extra_holidays": ["2026-03-17"]}}
    due, _ = deadlines(utc(2026, 3, 16, 9, 0), **section)  # Monday 12:00 MSK
    # 1 h before lunch, 4 h after, Tuesday is a company day off, 3 h on Wednesday -> 12:00 MSK
    assert due["acknowledge"] == "2026-03-18T09:00:00Z"


def test_calendar_without_working_time_is_refused() -> None:
    calendar = BusinessCalendar("Europe/Moscow", None, working_days=[])
    with pytest.raises(ValueError, match="no working time"):
        calendar.add_working_time(utc(2026, 1, 1, 0, 0), timedelta(hours=1))


@pytest.mark.parametrize(("section", "message"), [
    ({"calendar": {"country": "XX"}}, "no public holidays known for country 'XX'"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"calendar": {"working_hours": "18:00-09:00"}}, "the end must be after the start"),
    ({"deadlines": {"policies": {"respond": {"working_days": 2.5}}}}, "whole number"),
    ({"deadlines": {"policies": {"respond": {"weeks": 1}}}}, "normalizer.deadlines"),
])
def test_calendar_and_deadline_mistakes_are_config_errors(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NormalizerSettings.from_config(section)


def test_deadlines_count_from_the_second_of_receipt_and_each_complaint_owns_its_copy() -> None:
    settings = NormalizerSettings.from_config(MOSCOW)
    normalizer = Normalizer(settings)

    def complaint(received: datetime, text: str = "Прошу пересчитать счёт за январь") -> Any:
        return normalizer.normalize(Inbound(channel="test", message_id="m", text=text, received_at=received))

    # Monday 17:59:59 MSK: one second of working time is left that day, whatever the fraction
    early = complaint(utc(2026, 3, 16, 14, 59, 59, 1))
    late = complaint(utc(2026, 3, 16, 14, 59, 59, 999_999))
    assert early.deadlines["acknowledge"] == late.deadlines["acknowledge"] == "2026-03-17T13:59:59Z"
    assert early.received_at != late.received_at  # the instant itself is kept to the microsecond

    early.deadlines["acknowledge"] = "changed"
    early.meta.setdefault("deadlines_overridden", []).append("changed")
    again = complaint(utc(2026, 3, 16, 14, 59, 59, 500_000))
    assert again.deadlines["acknowledge"] == "2026-03-17T13:59:59Z"
    assert "deadlines_overridden" not in again.meta

    # the same second with another urgency has its own deadlines
    urgent = complaint(utc(2026, 3, 16, 14, 59, 59, 2), text="Пахнет газом в подъезде")
    assert urgent.deadlines["acknowledge"] == "2026-03-16T15:59:59Z"
    assert urgent.meta["deadlines_overridden"] == ["acknowledge", "respond", "technical"]
    # the next second moves on
    assert complaint(utc(2026, 3, 16, 15, 0, 0)).deadlines["acknowledge"] == "2026-03-17T14:00:00Z"
