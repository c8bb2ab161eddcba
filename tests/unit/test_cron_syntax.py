"""pgjobs' cron syntax and daylight-saving rules where they differ from cronsim's, which
finds the slots (see pgjobs.cron)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from pgjobs.core.cron import CronError, CronSchedule


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 L * *", "cron field 'day-of-month': 'L' is not a number"),
        ("0 0 LW * *", "cron field 'day-of-month': 'LW' is not a number"),
        ("0 0 * * 5L", "cron field 'day-of-week': '5L' is not a number or a day name"),
        ("0 0 * * MON#2", "cron field 'day-of-week': 'MON#2' is not a number or a day name"),
    ],
)
def test_forms_cronsim_reads_and_pgjobs_does_not_accept_are_refused(
    expression: str, message: str
) -> None:
    next(CronSim(expression, datetime(2025, 1, 1)))  # cronsim alone takes it
    with pytest.raises(CronError, match=f"^{message}"):
        CronSchedule(expression)


def test_an_open_ended_day_of_week_step_stops_at_saturday_where_cronsim_wraps_to_sunday() -> None:
    # 2025-06-07 is a Saturday: cronsim alone also fires on Sunday the 8th (7 is Sunday).
    start = datetime(2025, 6, 7, 12)
    assert next(CronSim("0 0 * * 1/2", start)) == datetime(2025, 6, 8)
    assert CronSchedule("0 0 * * 1/2").next_after(start.replace(tzinfo=UTC)) == datetime(
        2025, 6, 9, tzinfo=UTC
    )


def test_a_time_a_spring_gap_skips_does_not_fire_where_cronsim_fires_after_the_gap() -> None:
    # 02:30 does not exist in Paris on 2025-03-30 (02:00 CET -> 03:00 CEST).
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2025, 3, 29, 12, tzinfo=paris)
    assert next(CronSim("30 2 * * *", start)) == datetime(2025, 3, 30, 3, 0, tzinfo=paris)
    slot = CronSchedule("30 2 * * *", timezone="Europe/Paris").next_after(start)
    assert slot == datetime(2025, 3, 31, 2, 30, tzinfo=paris).astimezone(UTC)
