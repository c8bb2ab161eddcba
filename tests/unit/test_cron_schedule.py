"""Cron expressions: syntax, day rules, time zones and DST, and the errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pgjobs.core.cron import CronError, CronSchedule


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def nxt(expression: str, after: datetime, timezone: str = "UTC") -> datetime:
    return CronSchedule(expression, timezone=timezone).next_after(after)


def slot_minutes(expression: str) -> list[int]:
    """The minutes of the slots in one hour, for checking a minute field."""
    slots = CronSchedule(expression).slots_between(
        utc(2025, 1, 1, 9, 59, 59), utc(2025, 1, 1, 10, 59, 59)
    )
    return [s.minute for s in slots]


# -- the object --------------------------------------------------------------


def test_expression_and_timezone_are_kept_as_given() -> None:
    s = CronSchedule("*/5 * * * *", timezone="Europe/Paris")
    assert s.expression == "*/5 * * * *"
    assert s.timezone == "Europe/Paris"
    assert CronSchedule("@daily").timezone == "UTC"
    assert repr(s) == "CronSchedule('*/5 * * * *', timezone='Europe/Paris')"
    assert s == CronSchedule("*/5 * * * *", timezone="Europe/Paris")
    assert s != CronSchedule("*/5 * * * *")
    assert len({s, CronSchedule("*/5 * * * *", timezone="Europe/Paris")}) == 1


def test_results_are_aware_and_in_utc() -> None:
    paris = datetime(2025, 6, 1, 12, 2, tzinfo=ZoneInfo("Europe/Paris"))
    got = nxt("*/5 * * * *", paris, "Europe/Paris")
    assert got.tzinfo is UTC
    assert got == utc(2025, 6, 1, 10, 5)


# -- syntax ----------------------------------------------------------------------


def test_star_is_every_minute_and_strictly_after() -> None:
    assert nxt("* * * * *", utc(2025, 1, 1, 0, 0)) == utc(2025, 1, 1, 0, 1)
    assert nxt("* * * * *", utc(2025, 1, 1, 0, 0, 30)) == utc(2025, 1, 1, 0, 1)
    assert nxt("* * * * *", utc(2025, 1, 1, 0, 0) - timedelta(microseconds=1)) == utc(2025, 1, 1)


def test_single_number() -> None:
    assert nxt("5 * * * *", utc(2025, 1, 1, 10, 4, 59)) == utc(2025, 1, 1, 10, 5)
    assert nxt("5 * * * *", utc(2025, 1, 1, 10, 5)) == utc(2025, 1, 1, 11, 5)
    assert nxt("0 14 * * *", utc(2025, 1, 1, 14, 0)) == utc(2025, 1, 2, 14, 0)
    assert nxt("0 0 15 * *", utc(2025, 1, 20)) == utc(2025, 2, 15)
    assert nxt("0 0 1 6 *", utc(2025, 6, 1)) == utc(2026, 6, 1)


def test_range() -> None:
    assert slot_minutes("10-12 * * * *") == [10, 11, 12]
    assert nxt("10-12 * * * *", utc(2025, 1, 1, 10, 12)) == utc(2025, 1, 1, 11, 10)
    assert nxt("0 9-17 * * *", utc(2025, 1, 1, 17, 0)) == utc(2025, 1, 2, 9, 0)


def test_star_step() -> None:
    assert slot_minutes("*/15 * * * *") == [0, 15, 30, 45]
    assert nxt("*/15 * * * *", utc(2025, 1, 1, 10, 16)) == utc(2025, 1, 1, 10, 30)
    assert nxt("*/15 * * * *", utc(2025, 1, 1, 10, 45)) == utc(2025, 1, 1, 11, 0)
    # The step counts from the start of the field, so 7 does not divide the hour evenly.
    assert slot_minutes("*/7 * * * *") == [0, 7, 14, 21, 28, 35, 42, 49, 56]


def test_range_step() -> None:
    assert slot_minutes("10-30/10 * * * *") == [10, 20, 30]
    assert nxt("10-30/10 * * * *", utc(2025, 1, 1, 10, 30)) == utc(2025, 1, 1, 11, 10)
    assert slot_minutes("1-10/4 * * * *") == [1, 5, 9]


def test_start_step_runs_to_the_end_of_the_field() -> None:
    assert slot_minutes("50/5 * * * *") == [50, 55]
    assert nxt("50/5 * * * *", utc(2025, 1, 1, 10, 55)) == utc(2025, 1, 1, 11, 50)
    assert nxt("0 20/2 * * *", utc(2025, 1, 1, 22, 0)) == utc(2025, 1, 2, 20, 0)


def test_list_mixes_every_form() -> None:
    assert slot_minutes("1,2-3,*/20 * * * *") == [0, 1, 2, 3, 20, 40]
    assert slot_minutes("45,5,5,50/5 * * * *") == [5, 45, 50, 55]


def test_whitespace_between_fields_is_free() -> None:
    assert nxt("  5\t*  * * *  ", utc(2025, 1, 1, 10, 0)) == utc(2025, 1, 1, 10, 5)


# -- seconds -------------------------------------------------------------------


def test_six_fields_have_seconds_first() -> None:
    assert nxt("*/2 * * * * *", utc(2025, 1, 1, 0, 0, 0)) == utc(2025, 1, 1, 0, 0, 2)
    assert nxt("*/2 * * * * *", utc(2025, 1, 1, 0, 0, 59)) == utc(2025, 1, 1, 0, 1, 0)
    after = utc(2025, 1, 1) + timedelta(microseconds=500_000)
    assert nxt("*/2 * * * * *", after) == utc(2025, 1, 1, 0, 0, 2)
    assert nxt("15 * * * * *", utc(2025, 1, 1, 0, 0, 15)) == utc(2025, 1, 1, 0, 1, 15)
    assert nxt("30 0 12 * * *", utc(2025, 1, 1, 12, 0, 30)) == utc(2025, 1, 2, 12, 0, 30)


def test_five_fields_fire_on_the_whole_minute() -> None:
    assert nxt("* * * * *", utc(2025, 1, 1, 0, 0, 1)).second == 0


# -- day-of-month and day-of-week ------------------------------------------------


def test_dom_and_dow_both_restricted_match_either() -> None:
    # The 13th, and every Friday.
    s = CronSchedule("0 0 13 * 5")
    june = s.slots_between(utc(2025, 6, 1), utc(2025, 7, 1))
    assert [d.day for d in june] == [6, 13, 20, 27]
    july = s.slots_between(utc(2025, 7, 1), utc(2025, 7, 31))
    assert [d.day for d in july] == [4, 11, 13, 18, 25]  # the 13th is a Sunday


def test_only_dom_restricted() -> None:
    s = CronSchedule("0 0 13 * *")
    assert [d.day for d in s.slots_between(utc(2025, 6, 1), utc(2025, 8, 1))] == [13, 13]


def test_only_dow_restricted() -> None:
    s = CronSchedule("0 0 * * 5")
    assert [d.day for d in s.slots_between(utc(2025, 6, 1), utc(2025, 7, 1))] == [6, 13, 20, 27]


def test_a_field_starting_with_star_counts_as_unrestricted() -> None:
    # As in Vixie cron: */2 starts with '*', so both fields must match (odd-day Mondays).
    s = CronSchedule("0 0 */2 * 1")
    got = s.slots_between(utc(2025, 1, 1), utc(2025, 3, 1))
    assert got == [utc(2025, 1, 13), utc(2025, 1, 27), utc(2025, 2, 3), utc(2025, 2, 17)]


# -- names, Sunday ---------------------------------------------------------------


def test_month_and_day_names_in_any_case() -> None:
    # Weekdays of January and July; 2025-07-01 is a Tuesday.
    assert nxt("0 0 * JAN,jul mon-FRI", utc(2025, 2, 1)) == utc(2025, 7, 1)
    assert nxt("0 9 * * Sat", utc(2025, 6, 1)) == utc(2025, 6, 7, 9)
    assert nxt("0 0 1 feb-Apr/2 *", utc(2025, 2, 1)) == utc(2025, 4, 1)
    assert nxt("0 0 1 Dec *", utc(2025, 1, 1)) == utc(2025, 12, 1)


@pytest.mark.parametrize("sunday", ["0", "7", "SUN", "sun"])
def test_zero_and_seven_are_both_sunday(sunday: str) -> None:
    # 2025-06-02 is a Monday.
    assert nxt(f"0 0 * * {sunday}", utc(2025, 6, 2)) == utc(2025, 6, 8)


@pytest.mark.parametrize("weekend", ["5-7", "FRI-SUN", "5-0", "0,5,6", "SUN,FRI-SAT"])
def test_ranges_that_end_on_sunday(weekend: str) -> None:
    s = CronSchedule(f"0 0 * * {weekend}")
    # 2025-06-05 is a Thursday.
    assert s.slots_between(utc(2025, 6, 5), utc(2025, 6, 12)) == [
        utc(2025, 6, 6),
        utc(2025, 6, 7),
        utc(2025, 6, 8),
    ]


def test_day_of_week_steps() -> None:
    # Sunday, Wednesday and Saturday; 2025-06-01 is a Sunday.
    for expression in ("0 0 * * */3", "0 0 * * 0/3", "0 0 * * 7/3"):
        days = CronSchedule(expression).slots_between(utc(2025, 5, 31), utc(2025, 6, 7, 12))
        assert [d.day for d in days] == [1, 4, 7], expression
    # An open-ended step stops at Saturday rather than wrapping round to Sunday.
    days = CronSchedule("0 0 * * 1/2").slots_between(utc(2025, 5, 31), utc(2025, 6, 8))
    assert [d.day for d in days] == [2, 4, 6]


# -- macros ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@yearly", utc(2026, 1, 1)),
        ("@annually", utc(2026, 1, 1)),
        ("@monthly", utc(2025, 7, 1)),
        ("@weekly", utc(2025, 6, 8)),
        ("@daily", utc(2025, 6, 3)),
        ("@midnight", utc(2025, 6, 3)),
        ("@hourly", utc(2025, 6, 2, 11)),
        ("@HOURLY", utc(2025, 6, 2, 11)),
    ],
)
def test_macros(macro: str, expected: datetime) -> None:
    assert nxt(macro, utc(2025, 6, 2, 10, 30)) == expected


def test_macro_in_a_time_zone() -> None:
    assert nxt("@daily", utc(2025, 6, 2, 10), "Europe/Paris") == utc(2025, 6, 2, 22)


# -- calendar edges ------------------------------------------------------------------


def test_leap_day() -> None:
    assert nxt("0 0 29 2 *", utc(2025, 1, 1)) == utc(2028, 2, 29)
    assert nxt("0 0 29 2 *", utc(2024, 2, 29)) == utc(2028, 2, 29)
    # 2100 is not a leap year.
    assert nxt("0 0 29 2 *", utc(2096, 2, 29)) == utc(2104, 2, 29)


def test_month_ends() -> None:
    assert nxt("0 0 31 * *", utc(2025, 1, 31)) == utc(2025, 3, 31)
    assert nxt("0 0 30 * *", utc(2025, 1, 30)) == utc(2025, 3, 30)
    months = CronSchedule("0 0 31 * *").slots_between(utc(2025, 1, 1), utc(2026, 1, 1))
    assert [m.month for m in months] == [1, 3, 5, 7, 8, 10, 12]
    feb = CronSchedule("0 0 28-31 2 *")
    assert feb.slots_between(utc(2025, 1, 1), utc(2026, 1, 1)) == [utc(2025, 2, 28)]
    assert feb.slots_between(utc(2028, 1, 1), utc(2029, 1, 1)) == [
        utc(2028, 2, 28),
        utc(2028, 2, 29),
    ]


def test_rollover_into_next_year() -> None:
    assert nxt("0 0 1 1 *", utc(2025, 6, 1)) == utc(2026, 1, 1)
    assert nxt("59 23 31 12 *", utc(2025, 12, 31, 23, 59)) == utc(2026, 12, 31, 23, 59)
    assert nxt("* * * * * *", utc(2025, 12, 31, 23, 59, 59)) == utc(2026, 1, 1)


# -- time zones and DST --------------------------------------------------------------
# Europe/Paris 2025: 02:00 CET -> 03:00 CEST on 30 March (01:00Z);
# 03:00 CEST -> 02:00 CET on 26 October (01:00Z).
# America/New_York 2025: 02:00 EST -> 03:00 EDT on 9 March (07:00Z);
# 02:00 EDT -> 01:00 EST on 2 November (06:00Z).


def test_wall_clock_in_the_zone() -> None:
    assert nxt("0 9 * * *", utc(2025, 1, 1), "Europe/Paris") == utc(2025, 1, 1, 8)  # CET
    assert nxt("0 9 * * *", utc(2025, 7, 1), "Europe/Paris") == utc(2025, 7, 1, 7)  # CEST
    assert nxt("0 9 * * *", utc(2025, 1, 1), "Asia/Kolkata") == utc(2025, 1, 1, 3, 30)


def test_paris_spring_gap_skips_the_missing_time() -> None:
    # 02:30 does not exist on 30 March: no slot that day.
    assert nxt("30 2 * * *", utc(2025, 3, 29, 2), "Europe/Paris") == utc(2025, 3, 31, 0, 30)
    s = CronSchedule("*/30 2 * * *", timezone="Europe/Paris")
    assert s.slots_between(utc(2025, 3, 29), utc(2025, 3, 31, 12)) == [
        utc(2025, 3, 29, 1, 0),
        utc(2025, 3, 29, 1, 30),
        utc(2025, 3, 31, 0, 0),
        utc(2025, 3, 31, 0, 30),
    ]


def test_paris_spring_gap_keeps_the_times_around_it() -> None:
    hourly = CronSchedule("0 * * * *", timezone="Europe/Paris")
    # 01:00 CET, (02:00 missing), 03:00 CEST, 04:00 CEST.
    got = hourly.slots_between(utc(2025, 3, 29, 23, 30), utc(2025, 3, 30, 2, 30))
    assert got == [utc(2025, 3, 30, 0), utc(2025, 3, 30, 1), utc(2025, 3, 30, 2)]
    seconds = CronSchedule("*/20 59 1,3 * * *", timezone="Europe/Paris")
    got = seconds.slots_between(utc(2025, 3, 30), utc(2025, 3, 30, 2))
    # 01:59:00-01:59:40 CET, then 03:59:00-03:59:40 CEST.
    assert got == [utc(2025, 3, 30, 0, 59, s) for s in (0, 20, 40)] + [
        utc(2025, 3, 30, 1, 59, s) for s in (0, 20, 40)
    ]


def test_paris_fall_overlap_fires_once_at_the_first_occurrence() -> None:
    s = CronSchedule("30 2 * * *", timezone="Europe/Paris")
    assert s.next_after(utc(2025, 10, 25, 23)) == utc(2025, 10, 26, 0, 30)  # 02:30 CEST
    assert s.next_after(utc(2025, 10, 26, 0, 30)) == utc(2025, 10, 27, 1, 30)  # 02:30 CET
    # 01:15Z is 02:15 CET, in the second pass: 02:30 has already fired today.
    assert s.next_after(utc(2025, 10, 26, 1, 15)) == utc(2025, 10, 27, 1, 30)
    # 00:10Z is 02:10 CEST, in the first pass: 02:30 is still ahead.
    assert s.next_after(utc(2025, 10, 26, 0, 10)) == utc(2025, 10, 26, 0, 30)


def test_paris_fall_overlap_slots() -> None:
    s = CronSchedule("0,30 * * * *", timezone="Europe/Paris")
    got = s.slots_between(utc(2025, 10, 25, 22, 59), utc(2025, 10, 26, 2, 0))
    # 01:00, 01:30, 02:00, 02:30 CEST; the repeated 02:00 and 02:30 CET are skipped; 03:00 CET.
    assert got == [
        utc(2025, 10, 25, 23, 0),
        utc(2025, 10, 25, 23, 30),
        utc(2025, 10, 26, 0, 0),
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 2, 0),
    ]
    assert s.next_after(utc(2025, 10, 26, 1, 15)) == utc(2025, 10, 26, 2, 0)
    assert s.latest_at_or_before(utc(2025, 10, 26, 1, 45)) == utc(2025, 10, 26, 0, 30)


def test_new_york_spring_gap() -> None:
    s = CronSchedule("30 2 * * *", timezone="America/New_York")
    assert s.next_after(utc(2025, 3, 8, 8)) == utc(2025, 3, 10, 6, 30)  # 02:30 EDT
    assert s.latest_at_or_before(utc(2025, 3, 10, 6)) == utc(2025, 3, 8, 7, 30)  # 02:30 EST
    hourly = CronSchedule("0 * * * *", timezone="America/New_York")
    assert hourly.slots_between(utc(2025, 3, 9, 5, 30), utc(2025, 3, 9, 8)) == [
        utc(2025, 3, 9, 6),  # 01:00 EST
        utc(2025, 3, 9, 7),  # 03:00 EDT
        utc(2025, 3, 9, 8),  # 04:00 EDT
    ]


def test_new_york_fall_overlap() -> None:
    s = CronSchedule("30 1 * * *", timezone="America/New_York")
    assert s.next_after(utc(2025, 11, 2)) == utc(2025, 11, 2, 5, 30)  # 01:30 EDT
    assert s.next_after(utc(2025, 11, 2, 5, 10)) == utc(2025, 11, 2, 5, 30)  # from 01:10 EDT
    assert s.next_after(utc(2025, 11, 2, 5, 30)) == utc(2025, 11, 3, 6, 30)  # 01:30 EST
    assert s.next_after(utc(2025, 11, 2, 6, 10)) == utc(2025, 11, 3, 6, 30)  # from 01:10 EST
    assert s.latest_at_or_before(utc(2025, 11, 2, 6, 45)) == utc(2025, 11, 2, 5, 30)
    hourly = CronSchedule("0 * * * *", timezone="America/New_York")
    assert hourly.slots_between(utc(2025, 11, 2, 3, 30), utc(2025, 11, 2, 7, 30)) == [
        utc(2025, 11, 2, 4),  # 00:00 EDT
        utc(2025, 11, 2, 5),  # 01:00 EDT; 01:00 EST (06:00Z) is the repeat
        utc(2025, 11, 2, 7),  # 02:00 EST
    ]


def test_every_second_through_an_overlap_resumes_after_the_repeat() -> None:
    s = CronSchedule("* * * * * *", timezone="Europe/Paris")
    # 01:00:00.5Z is 02:00:00.5 CET, the start of the second pass: resume at 03:00 CET.
    got = s.next_after(utc(2025, 10, 26, 1) + timedelta(microseconds=500_000))
    assert got == utc(2025, 10, 26, 2)
    assert s.latest_at_or_before(utc(2025, 10, 26, 1, 30)) == utc(2025, 10, 26, 0, 59, 59)


def test_a_schedule_that_only_names_missing_times() -> None:
    # 02:00 on the last Sunday of March never exists in Paris. (*/7 starts with '*', so
    # both day fields must match: the 25th to the 31st, and a Sunday.)
    s = CronSchedule("0 2 25-31 3 */7", timezone="Europe/Paris")
    with pytest.raises(CronError, match="has no slot in Europe/Paris within 400 years"):
        s.next_after(utc(2025, 1, 1))
    assert s.latest_at_or_before(utc(2025, 6, 1)) is None
    assert s.slots_between(utc(2025, 1, 1), utc(2026, 1, 1)) == []
    # In UTC the same expression fires.
    assert nxt("0 2 25-31 3 */7", utc(2025, 1, 1)) == utc(2025, 3, 30, 2)


# -- slots_between ---------------------------------------------------------------


def test_slots_between_counts_and_orders() -> None:
    s = CronSchedule("*/5 * * * *")
    got = s.slots_between(utc(2025, 1, 1, 10), utc(2025, 1, 1, 11))
    assert len(got) == 12
    assert got == [utc(2025, 1, 1, 10, 5) + timedelta(minutes=5 * i) for i in range(12)]
    assert got == sorted(got)
    assert all(slot.tzinfo is UTC for slot in got)


def test_slots_between_excludes_start_and_includes_end() -> None:
    s = CronSchedule("0 * * * *")
    assert s.slots_between(utc(2025, 1, 1, 10), utc(2025, 1, 1, 12)) == [
        utc(2025, 1, 1, 11),
        utc(2025, 1, 1, 12),
    ]
    assert s.slots_between(utc(2025, 1, 1, 10), utc(2025, 1, 1, 10)) == []
    assert s.slots_between(utc(2025, 1, 1, 12), utc(2025, 1, 1, 10)) == []


def test_slots_between_limit() -> None:
    s = CronSchedule("*/5 * * * *")
    got = s.slots_between(utc(2025, 1, 1, 10), utc(2025, 1, 1, 11), limit=3)
    assert got == [utc(2025, 1, 1, 10, 5), utc(2025, 1, 1, 10, 10), utc(2025, 1, 1, 10, 15)]
    assert s.slots_between(utc(2025, 1, 1, 10), utc(2025, 1, 1, 11), limit=0) == []
    every_second = CronSchedule("* * * * * *")
    assert len(every_second.slots_between(utc(2025, 1, 1), utc(2025, 1, 2))) == 1000


def test_slots_between_accepts_other_zones() -> None:
    paris = ZoneInfo("Europe/Paris")
    s = CronSchedule("0 12 * * *", timezone="Europe/Paris")
    got = s.slots_between(datetime(2025, 6, 1, tzinfo=paris), datetime(2025, 6, 3, tzinfo=paris))
    assert got == [utc(2025, 6, 1, 10), utc(2025, 6, 2, 10)]


# -- latest_at_or_before ---------------------------------------------------------


def test_latest_at_or_before() -> None:
    s = CronSchedule("0 9 * * MON-FRI")
    # 2025-06-07 is a Saturday.
    assert s.latest_at_or_before(utc(2025, 6, 7, 12)) == utc(2025, 6, 6, 9)
    assert s.latest_at_or_before(utc(2025, 6, 6, 9)) == utc(2025, 6, 6, 9)
    assert s.latest_at_or_before(utc(2025, 6, 6, 8, 59, 59)) == utc(2025, 6, 5, 9)
    assert CronSchedule("*/2 * * * * *").latest_at_or_before(
        utc(2025, 1, 1, 0, 0, 3) + timedelta(microseconds=1)
    ) == utc(2025, 1, 1, 0, 0, 2)
    assert CronSchedule("0 0 1 1 *").latest_at_or_before(utc(2025, 6, 1)) == utc(2025, 1, 1)
    assert CronSchedule("0 0 31 * *").latest_at_or_before(utc(2025, 3, 30)) == utc(2025, 1, 31)


def test_latest_at_or_before_gives_up_after_about_five_years() -> None:
    leap = CronSchedule("0 0 29 2 *")
    assert leap.latest_at_or_before(utc(2025, 6, 1)) == utc(2024, 2, 29)
    # Feb 29 on a Sunday (*/7 is Sunday alone, and both fields must match): 2004, then 2032.
    sunday = CronSchedule("0 0 29 2 */7")
    assert sunday.latest_at_or_before(utc(2036, 2, 28)) == utc(2032, 2, 29)
    assert sunday.latest_at_or_before(utc(2032, 2, 28)) is None
    assert sunday.latest_at_or_before(utc(2009, 1, 1)) == utc(2004, 2, 29)
    assert sunday.next_after(utc(2004, 2, 29)) == utc(2032, 2, 29)
    # With a plain 0 both fields are restricted: the 29th or any Sunday of February.
    assert CronSchedule("0 0 29 2 0").latest_at_or_before(utc(2021, 3, 1)) == utc(2021, 2, 28)


def test_latest_and_next_agree() -> None:
    s = CronSchedule("7,37 */3 * * *", timezone="America/New_York")
    at = utc(2025, 11, 2, 6, 0)
    latest = s.latest_at_or_before(at)
    assert latest is not None
    assert s.next_after(latest) > at


# -- period_hint -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("* * * * * *", 1),
        ("*/2 * * * * *", 2),
        ("* * * * *", 60),
        ("*/5 * * * *", 300),
        ("0,30 9 * * *", 1800),
        ("0 * * * *", 3600),
        ("0 9-17 * * *", 3600),
        ("@daily", 86400),
        ("@weekly", 7 * 86400),
        ("@monthly", 28 * 86400),
        ("0 0 1,2 * *", 86400),
        ("0 23 * * *", 86400),
        ("0 0,23 * * *", 3600),
    ],
)
def test_period_hint(expression: str, seconds: float) -> None:
    assert CronSchedule(expression).period_hint() == seconds


def test_period_hint_of_a_leap_day_is_years() -> None:
    assert CronSchedule("0 0 29 2 *").period_hint() > 3 * 365 * 86400


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "cron field 'minute': 61 is out of range 0-59 in '61 * * * *'"),
        ("* 24 * * *", "cron field 'hour': 24 is out of range 0-23 in '* 24 * * *'"),
        ("* * 0 * *", "cron field 'day-of-month': 0 is out of range 1-31 in '* * 0 * *'"),
        ("* * 32 * *", "cron field 'day-of-month': 32 is out of range 1-31 in '* * 32 * *'"),
        ("* * * 13 *", "cron field 'month': 13 is out of range 1-12 in '* * * 13 *'"),
        ("* * * 0 *", "cron field 'month': 0 is out of range 1-12 in '* * * 0 *'"),
        ("* * * * 8", "cron field 'day-of-week': 8 is out of range 0-7 in '* * * * 8'"),
        ("60 * * * * *", "cron field 'second': 60 is out of range 0-59 in '60 * * * * *'"),
        ("0-60 * * * *", "cron field 'minute': 60 is out of range 0-59 in '0-60 * * * *'"),
        ("x * * * *", "cron field 'minute': 'x' is not a number in 'x * * * *'"),
        ("* MON * * *", "cron field 'hour': 'MON' is not a number in '* MON * * *'"),
        (
            "* * * FOO *",
            "cron field 'month': 'FOO' is not a number or a month name (JAN-DEC) in '* * * FOO *'",
        ),
        (
            "* * * * JAN",
            "cron field 'day-of-week': 'JAN' is not a number or a day name (SUN-SAT) "
            "in '* * * * JAN'",
        ),
        ("-5 * * * *", "cron field 'minute': missing number in '-5' in '-5 * * * *'"),
        ("5- * * * *", "cron field 'minute': missing number in '5-' in '5- * * * *'"),
        ("1-2-3 * * * *", "cron field 'minute': '2-3' is not a number in '1-2-3 * * * *'"),
        (
            "*/0 * * * *",
            "cron field 'minute': bad step '0' in '*/0' (must be a whole number of at least 1) "
            "in '*/0 * * * *'",
        ),
        (
            "*/ * * * *",
            "cron field 'minute': bad step '' in '*/' (must be a whole number of at least 1) "
            "in '*/ * * * *'",
        ),
        (
            "1/2/3 * * * *",
            "cron field 'minute': bad step '2/3' in '1/2/3' (must be a whole number of at least 1) "
            "in '1/2/3 * * * *'",
        ),
        ("5-2 * * * *", "cron field 'minute': range '5-2' runs backwards in '5-2 * * * *'"),
        (
            "* * * DEC-JAN *",
            "cron field 'month': range 'DEC-JAN' runs backwards in '* * * DEC-JAN *'",
        ),
        ("1,,2 * * * *", "cron field 'minute': empty list item in '1,,2' in '1,,2 * * * *'"),
        ("1, * * * *", "cron field 'minute': empty list item in '1,' in '1, * * * *'"),
        ("² * * * *", "cron field 'minute': '²' is not a number in '² * * * *'"),
        (
            "0 0 30 2 *",
            "cron field 'day-of-month': '30' never occurs in month '2' in '0 0 30 2 *'",
        ),
        (
            "0 0 31 4,6,9,11 *",
            "cron field 'day-of-month': '31' never occurs in month '4,6,9,11' "
            "in '0 0 31 4,6,9,11 *'",
        ),
        (
            "* * * *",
            "cron expression needs 5 fields (minute hour day-of-month month day-of-week) "
            "or 6 with seconds first, got 4 in '* * * *'",
        ),
        (
            "* * * * * * *",
            "cron expression needs 5 fields (minute hour day-of-month month day-of-week) "
            "or 6 with seconds first, got 7 in '* * * * * * *'",
        ),
        (
            "",
            "cron expression needs 5 fields (minute hour day-of-month month day-of-week) "
            "or 6 with seconds first, got 0 in ''",
        ),
        ("@reboot", "unknown cron macro '@reboot' in '@reboot'"),
        ("@daily 5", "unknown cron macro '@daily 5' in '@daily 5'"),
    ],
)
def test_bad_expressions(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=f"^{re.escape(message)}$"):
        CronSchedule(expression)


def test_day_of_month_that_never_occurs_is_fine_under_the_or_rule() -> None:
    # Both fields restricted: Feb 30 never comes, but Mondays in February do.
    assert nxt("0 0 30 2 MON", utc(2025, 1, 1)) == utc(2025, 2, 3)


@pytest.mark.parametrize("zone", ["Mars/Base", "", "../etc/passwd", "/etc/localtime", "utc"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(CronError, match=f"^{re.escape(f'unknown time zone {zone!r}')}$"):
        CronSchedule("* * * * *", timezone=zone)


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)
    with pytest.raises(ValueError, match="out of range"):
        CronSchedule("61 * * * *")


def test_naive_datetimes_are_refused() -> None:
    s = CronSchedule("* * * * *")
    naive = datetime(2025, 1, 1)
    with pytest.raises(
        ValueError, match=r"^next_after needs a timezone-aware datetime, got naive "
    ):
        s.next_after(naive)
    with pytest.raises(ValueError, match=r"^latest_at_or_before needs a timezone-aware datetime"):
        s.latest_at_or_before(naive)
    with pytest.raises(ValueError, match=r"^slots_between needs a timezone-aware datetime"):
        s.slots_between(naive, utc(2025, 1, 2))
    with pytest.raises(ValueError, match=r"^slots_between needs a timezone-aware datetime"):
        s.slots_between(utc(2025, 1, 1), naive)


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^limit must be at least 0, got -1$"):
        CronSchedule("* * * * *").slots_between(utc(2025, 1, 1), utc(2025, 1, 2), limit=-1)
