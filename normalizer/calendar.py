"""A business calendar: working hours, weekends and public holidays in one time zone.

Deadlines such as "8 working hours" or "5 working days" are counted on it. Public holidays
(and the working Saturdays some countries swap them for) come from the ``holidays`` library;
an operator can add company days off and extra working days in config.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

#: How far a deadline may lie in the future; a calendar with no working time at all
#: (every day a holiday) would otherwise loop for ever.
MAX_DAYS = 3 * 366
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarError(ValueError):
    """The calendar settings make no sense (unknown country or time zone, bad hours)."""


def parse_period(text: str) -> tuple[time, time]:
    """``"09:00-18:00"`` -> ``(09:00, 18:00)``; ``"24:00"`` is accepted as the end of the day."""
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start = time.fromisoformat(start_text)
        end = time.max if end_text == "24:00" else time.fromisoformat(end_text)
    except ValueError as exc:
        raise CalendarError(f"working hours {text!r}: expected HH:MM-HH:MM") from exc
    if end <= start:
        raise CalendarError(f"working hours {text!r}: the end must be after the start")
    return start, end


class BusinessCalendar:
    """Working time in ``timezone``: ``periods`` of every working day (e.g. 09:00-18:00),
    on ``working_days`` (default: the country's non-weekend days), minus public holidays."""

    def __init__(self, timezone_name: str = "Europe/Moscow", country: str | None = "RU", subdivision: str | None = None,
                 working_hours: Sequence[str] = ("09:00-18:00",), working_days: Sequence[str] | None = None,
                 extra_holidays: Iterable[str | date] = (), extra_working_days: Iterable[str | date] = ()) -> None:
        try:
            self.tz = ZoneInfo(timezone_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"unknown time zone {timezone_name!r}") from exc
        self.timezone_name = timezone_name
        self.country = country
        self.holidays: holidays.HolidayBase | None = None
        if country:
            try:
                # the years around now are loaded at once; later ones load when first asked for
                this_year = datetime.now(UTC).year
                self.holidays = holidays.country_holidays(country, subdiv=subdivision, years=range(this_year - 1, this_year + 3))
            except NotImplementedError as exc:
                raise CalendarError(f"no public holidays known for country {country!r} (subdivision {subdivision!r})") from exc
        self.periods = sorted(parse_period(p) for p in working_hours)
        if not self.periods:
            raise CalendarError("working hours: at least one period is needed")
        for (_, end), (start, _) in zip(self.periods, self.periods[1:]):
            if start < end:
                raise CalendarError("working hours: periods overlap")
        if working_days is None:
            weekend = set(self.holidays.weekend) if self.holidays is not None else {5, 6}
            self.working_weekdays = frozenset(d for d in range(7) if d not in weekend)
        else:
            unknown = [d for d in working_days if d not in WEEKDAYS]
            if unknown:
                raise CalendarError(f"working days: unknown day(s) {unknown} (use {', '.join(WEEKDAYS)})")
            self.working_weekdays = frozenset(WEEKDAYS.index(d) for d in working_days)
        self.extra_holidays = frozenset(_date(d) for d in extra_holidays)
        self.extra_working_days = frozenset(_date(d) for d in extra_working_days)

    # -- days -------------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        if day in self.extra_holidays:
            return False
        if self.holidays is not None:
            if day in self.holidays:  # also loads that year, and with it the swapped working days
                return False
            if day in self.holidays.weekend_workdays:
                return True
        return day.weekday() in self.working_weekdays

    def holiday_name(self, day: date) -> str | None:
        return self.holidays.get(day) if self.holidays is not None else None

    def _local(self, day: date, at: time) -> datetime:
        if at == time.max:  # "24:00": midnight at the start of the next day
            return datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        return datetime.combine(day, at, tzinfo=self.tz)

    def _working_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """That day's working periods as UTC instants (empty on a day off)."""
        if not self.is_working_day(day):
            return []
        return [(self._local(day, s).astimezone(UTC), self._local(day, e).astimezone(UTC))
                for s, e in self.periods]

    # -- arithmetic (all results in UTC) ----------------------------------------------
    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The instant when ``duration`` of working time has passed since ``start``;
        time outside working hours, on weekends and on holidays does not count."""
        remaining = duration
        now = start.astimezone(UTC)
        day = start.astimezone(self.tz).date()
        for _ in range(MAX_DAYS):
            for period_start, period_end in self._working_periods(day):
                begin = max(period_start, now)
                if begin >= period_end:
                    continue
                available = period_end - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
            day += timedelta(days=1)
        raise CalendarError(f"no working time within {MAX_DAYS} days")

    def end_of_working_day(self, start: datetime, working_days: int) -> datetime:
        """The close of business on the ``working_days``-th working day after the day of
        ``start`` (0: the close of the day itself, or of the next working day)."""
        day = start.astimezone(self.tz).date()
        counted = 0
        for _ in range(MAX_DAYS):
            if working_days == 0 and self.is_working_day(day):
                return self._working_periods(day)[-1][1]
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
                if counted >= working_days:
                    return self._working_periods(day)[-1][1]
        raise CalendarError(f"no working day within {MAX_DAYS} days")

    def end_of_calendar_day(self, start: datetime, days: int, roll_to_working_day: bool = False) -> datetime:
        """The last second of the ``days``-th calendar day after the day of ``start`` in local
        time; with ``roll_to_working_day`` a deadline falling on a day off moves to the next
        working day (as civil codes usually count)."""
        day = start.astimezone(self.tz).date() + timedelta(days=days)
        if roll_to_working_day:
            for _ in range(MAX_DAYS):
                if self.is_working_day(day):
                    break
                day += timedelta(days=1)
        return (self._local(day + timedelta(days=1), time(0)) - timedelta(seconds=1)).astimezone(UTC)


def _date(value: str | date) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CalendarError(f"{value!r} is not a date (YYYY-MM-DD)") from exc
