"""Cron expressions: parsing, and the slots they name in a time zone.

A schedule has five fields (minute hour day-of-month month day-of-week) or
six with a leading seconds field, or is one of the macros @yearly,
@annually, @monthly, @weekly, @daily, @midnight and @hourly.

Slots are wall-clock times in the schedule's zone. A wall time that a
daylight-saving gap skips does not fire; a wall time that a fall-back
overlap repeats fires once, at its first occurrence. Every datetime this
module returns is timezone-aware and in UTC.

Day-of-month and day-of-week combine as in Vixie cron: when both fields are
restricted (neither starts with ``*``), a day matches if either matches;
otherwise both must. So ``0 0 */2 * MON`` fires on odd-numbered Mondays,
because ``*/2`` starts with ``*`` and counts as unrestricted.

cronsim parses the fields and finds the matching wall times; this module
adds what pgjobs promises beyond it:

- the syntax check, with messages that name the field and the value (cronsim
  says "Bad minute"), which also refuses what pgjobs does not accept and
  cronsim does (``L``, ``LW``, ``#``);
- a translation of the day-of-week forms cronsim reads otherwise: a range
  that ends on Sunday (``FRI-SUN``, ``5-0``), a step from Sunday as 7
  (``7/2``) and an open-ended step (``1/2``, which stops at Saturday here and
  would wrap round to Sunday as 7 there) go to it as the list of their days;
- the daylight-saving rules above. cronsim searches wall-clock times without
  a zone here, and each one found is placed in the zone by those rules
  (cronsim's own follow Debian cron: a skipped time fires after the gap).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["CronError", "CronSchedule"]

# The Gregorian calendar repeats every 400 years (and 400 years is a whole
# number of weeks), so a day pattern that has no match in 400 years has none
# at all: the forward search can stop there instead of running to year 9999.
_FORWARD_YEARS = 400

# How far back latest_at_or_before looks: a slot older than this is no use
# to a scheduler deciding whether it missed a run.
_LOOKBACK = timedelta(days=1827)

_ONE_SECOND = timedelta(seconds=1)

_MONTH_NAMES = {
    name.upper(): number
    for number, name in enumerate(calendar.month_abbr)
    if name  # month_abbr[0] is ""
}
_DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A cron expression or time zone that cannot be used."""


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    # `*` and open-ended `a/n` stop here; only day-of-week differs, where 7 is
    # accepted as Sunday but `1/2` should not wrap round to it.
    open_hi: int
    names: dict[str, int] | None = None
    names_hint: str = ""


_SECOND = _Field("second", 0, 59, 59)
_MINUTE = _Field("minute", 0, 59, 59)
_HOUR = _Field("hour", 0, 23, 23)
_DOM = _Field("day-of-month", 1, 31, 31)
_MONTH = _Field("month", 1, 12, 12, _MONTH_NAMES, " or a month name (JAN-DEC)")
_DOW = _Field("day-of-week", 0, 7, 6, _DAY_NAMES, " or a day name (SUN-SAT)")
_FIELDS = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)


def _error(field: _Field, detail: str, expression: str) -> CronError:
    return CronError(f"cron field {field.name!r}: {detail} in {expression!r}")


def _parse_value(token: str, part: str, field: _Field, expression: str) -> int:
    if not token:
        raise _error(field, f"missing number in {part!r}", expression)
    # isdigit() alone would accept digits such as '²' that int() rejects.
    if token.isascii() and token.isdigit():
        value = int(token)
    elif field.names is not None and token.upper() in field.names:
        value = field.names[token.upper()]
    else:
        raise _error(field, f"{token!r} is not a number{field.names_hint}", expression)
    if not field.lo <= value <= field.hi:
        raise _error(field, f"{value} is out of range {field.lo}-{field.hi}", expression)
    return value


def _parse_part(part: str, field: _Field, expression: str) -> set[int]:
    base, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) < 1:
            raise _error(
                field,
                f"bad step {step_text!r} in {part!r} (must be a whole number of at least 1)",
                expression,
            )
        step = int(step_text)
    if base == "*":
        first, last = field.lo, field.open_hi
    elif "-" in base:
        first_text, _, last_text = base.partition("-")
        first = _parse_value(first_text, part, field, expression)
        last = _parse_value(last_text, part, field, expression)
        if field is _DOW and last == 0 and first > 0:
            # Lets FRI-SUN mean the weekend rather than an error: Sunday
            # closes the week as 7.
            last = 7
        if first > last:
            raise _error(field, f"range {part!r} runs backwards", expression)
    else:
        first = _parse_value(base, part, field, expression)
        if slash and field is _DOW and first == 7:
            # 7/n starts from Sunday; left as 7 it would start past the
            # open end (6) and name no day at all.
            first = 0
        last = field.open_hi if slash else first
    values = set(range(first, last + 1, step))
    if field is _DOW:
        values = {v % 7 for v in values}
    return values


def _check_field(text: str, field: _Field, expression: str) -> str:
    """The field checked, as cronsim is to read it: day-of-week parts other than `*` and
    `*/n` as the list of their days (see the module's docstring); the others as given."""
    parts = []
    for part in text.split(","):
        if not part:
            raise _error(field, f"empty list item in {text!r}", expression)
        values = _parse_part(part, field, expression)
        if field is _DOW and not part.startswith("*"):
            part = ",".join(map(str, sorted(values)))
        parts.append(part)
    return ",".join(parts)


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _min_step(values: tuple[int, ...]) -> int | None:
    if len(values) < 2:
        return None
    return min(b - a for a, b in pairwise(values))


def _require_aware(dt: datetime, what: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} needs a timezone-aware datetime, got naive {dt.isoformat()}")


class CronSchedule:
    """A parsed cron expression bound to a time zone."""

    __slots__ = ("_cron", "_expression", "_fields", "_period", "_timezone", "_tz")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        """Parse `expression`; raise CronError if it or `timezone` is unusable."""
        self._expression = expression
        self._timezone = timezone
        self._tz = _load_zone(timezone)
        self._period: float | None = None

        text = expression.strip()
        if text.startswith("@"):
            if text.lower() not in _MACROS:
                raise CronError(f"unknown cron macro {text!r} in {expression!r}")
            text = _MACROS[text.lower()]
        fields = text.split()
        if len(fields) == 5:
            fields.insert(0, "0")
        elif len(fields) != 6:
            raise CronError(
                f"cron expression needs 5 fields (minute hour day-of-month month "
                f"day-of-week) or 6 with seconds first, got {len(fields)} in {expression!r}"
            )
        checked = [
            _check_field(value, field, expression)
            for value, field in zip(fields, _FIELDS, strict=True)
        ]
        self._fields = " ".join(checked)
        try:
            # Parsed once here for its fields (period_hint, the check below);
            # each search is a CronSim of its own, from where it starts.
            self._cron = CronSim(self._fields, datetime(2001, 1, 1))
        except CronSimError as exc:
            # The checks above leave cronsim one refusal: days of the month that
            # no month of the month field has, where both day fields must match.
            dom, month = fields[3], fields[4]
            raise _error(_DOM, f"{dom!r} never occurs in month {month!r}", expression) from exc
        if self._cron.day_and and not any(
            d <= (29 if m == 2 else _days_in(2001, m))
            for m in self._cron.months
            for d in self._cron.days
        ):
            # Accepting it would make every search run to its bound and fail.
            dom, month = fields[3], fields[4]
            raise _error(_DOM, f"{dom!r} never occurs in month {month!r}", expression)

    @property
    def expression(self) -> str:
        """The expression as given."""
        return self._expression

    @property
    def timezone(self) -> str:
        """The time zone name as given."""
        return self._timezone

    def __repr__(self) -> str:
        return f"CronSchedule({self._expression!r}, timezone={self._timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self._expression, self._timezone) == (other._expression, other._timezone)

    def __hash__(self) -> int:
        return hash((self._expression, self._timezone))

    def next_after(self, dt: datetime) -> datetime:
        """Return the first slot strictly after `dt`, in UTC."""
        _require_aware(dt, "next_after")
        local = dt.astimezone(self._tz)
        last_year = min(local.year + _FORWARD_YEARS, datetime.max.year)
        slot = next(self._slots(dt, last_year), None)
        if slot is None:
            raise CronError(
                f"cron expression {self._expression!r} has no slot in {self._timezone} "
                f"within {_FORWARD_YEARS} years after {dt.isoformat()}"
            )
        return slot

    def latest_at_or_before(self, dt: datetime) -> datetime | None:
        """Return the most recent slot at or before `dt` (in UTC), or None within ~5 years."""
        _require_aware(dt, "latest_at_or_before")
        local = dt.astimezone(self._tz)
        wall = local.replace(tzinfo=None, microsecond=0)
        if local.fold:
            # dt is in the second pass of a fall-back overlap: every repeated
            # wall time has already had its (first) occurrence, including the
            # ones later on the wall clock than dt.
            wall = self._anomaly_end(wall) - _ONE_SECOND
        floor = datetime.min + _LOOKBACK
        bound = wall - _LOOKBACK if wall >= floor else datetime.min
        while True:
            found = next(self._walls(wall, bound.year, reverse=True), None)
            if found is None or found < bound:
                return None
            instant = self._instant(found)
            if instant is not None:
                return instant
            wall = min(self._anomaly_start(found), found) - _ONE_SECOND

    def slots_between(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """Return the slots in (start, end], in order, at most `limit` of them, in UTC."""
        _require_aware(start, "slots_between")
        _require_aware(end, "slots_between")
        if limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        last_year = min(end.astimezone(self._tz).year + 1, datetime.max.year)
        slots: list[datetime] = []
        if limit == 0:
            return slots
        for slot in self._slots(start, last_year):
            if slot > end:
                break
            slots.append(slot)
            if len(slots) == limit:
                break
        return slots

    def period_hint(self) -> float:
        """Return the shortest spacing between consecutive slots in seconds, ignoring DST."""
        if self._period is None:
            self._period = float(self._shortest_gap())
        return self._period

    # -- searching ---------------------------------------------------------

    def _walls(self, start: datetime, year: int, *, reverse: bool = False) -> Iterator[datetime]:
        """The matching wall times from `start` on (back from it with `reverse`), `start`
        included, ignoring DST, up to the end (or back to the start) of `year`."""
        try:
            sim = self._at(start, reverse)
        except OverflowError:
            return  # at year 9999's end or year 1's start
        while True:
            try:
                found: datetime = next(sim)
            except StopIteration:
                # cronsim gives up after 50 years without a match; the bound
                # here is the caller's.
                if (sim.dt.year < year) if reverse else (sim.dt.year > year):
                    return
                sim = self._at(sim.dt, reverse)
                continue
            except (OverflowError, ValueError):
                return  # past year 9999 or before year 1
            if (found.year < year) if reverse else (found.year > year):
                return
            yield found

    def _at(self, wall: datetime, reverse: bool) -> CronSim:
        """A search from `wall` on, included (cronsim's starts strictly after its datetime)."""
        return CronSim(self._fields, wall + (_ONE_SECOND if reverse else -_ONE_SECOND), reverse)

    def _slots(self, dt: datetime, last_year: int) -> Iterator[datetime]:
        """The slots strictly after `dt`, in order, in UTC, up to the end of `last_year`."""
        local = dt.astimezone(self._tz)
        wall = local.replace(tzinfo=None, microsecond=0)
        if local.fold:
            # dt is in the second pass of a fall-back overlap: the repeated
            # wall times already fired on the first pass, so resume after it.
            wall = self._anomaly_end(wall)
        else:
            wall += _ONE_SECOND
        while True:
            restart = None
            for found in self._walls(wall, last_year):
                instant = self._instant(found)
                if instant is None:
                    # A gap skips it, and every wall time up to the gap's end.
                    restart = max(self._anomaly_end(found), found + _ONE_SECOND)
                    break
                # In an overlap this is its first pass; the wall times after it follow.
                yield instant
            if restart is None:
                return
            wall = restart

    # -- daylight saving ---------------------------------------------------

    def _instant(self, wall: datetime) -> datetime | None:
        """Return the UTC instant of `wall` (first occurrence), or None if DST skips it."""
        instant = wall.replace(tzinfo=self._tz).astimezone(UTC)
        # fold=0 in a gap yields a real instant with a different wall time;
        # the round trip is what tells a skipped time from a real one.
        if instant.astimezone(self._tz).replace(tzinfo=None) != wall:
            return None
        return instant

    def _anomalous(self, wall: datetime) -> bool:
        # A wall time inside a gap or an overlap is the only kind whose
        # offset depends on fold (PEP 495).
        return (
            wall.replace(tzinfo=self._tz, fold=0).utcoffset()
            != wall.replace(tzinfo=self._tz, fold=1).utcoffset()
        )

    def _span(self, wall: datetime) -> timedelta:
        a = wall.replace(tzinfo=self._tz, fold=0).utcoffset()
        b = wall.replace(tzinfo=self._tz, fold=1).utcoffset()
        assert a is not None and b is not None  # a ZoneInfo always has an offset
        return abs(a - b)

    def _anomaly_end(self, wall: datetime) -> datetime:
        """Return the first wall second after the gap or overlap that holds `wall`."""
        # A gap or overlap is exactly as long as the offset change, so the
        # wall time one span later is past it.
        return _first_true(wall, wall + self._span(wall), lambda w: not self._anomalous(w))

    def _anomaly_start(self, wall: datetime) -> datetime:
        """Return the first wall second of the gap or overlap that holds `wall`."""
        return _first_true(wall - self._span(wall), wall, self._anomalous)

    # -- period ------------------------------------------------------------

    def _shortest_gap(self) -> int:
        secs, mins, hours = (
            tuple(sorted(self._cron.seconds)),
            tuple(sorted(self._cron.minutes)),
            tuple(sorted(self._cron.hours)),
        )
        first_tod = hours[0] * 3600 + mins[0] * 60 + secs[0]
        last_tod = hours[-1] * 3600 + mins[-1] * 60 + secs[-1]
        gaps: list[int] = []
        if (step := _min_step(secs)) is not None:
            gaps.append(step)
        if (step := _min_step(mins)) is not None:
            gaps.append(step * 60 - (secs[-1] - secs[0]))
        if (step := _min_step(hours)) is not None:
            gaps.append(step * 3600 - (mins[-1] * 60 + secs[-1] - mins[0] * 60 - secs[0]))
        gaps.append(self._shortest_day_gap() * 86400 - (last_tod - first_tod))
        return min(gaps)

    def _shortest_day_gap(self) -> int:
        # Four years, one of them leap, hold every month length and weekday
        # combination often enough for a rough figure.
        start = date(2001, 1, 1)
        previous: int | None = None
        shortest = 4 * 365 + 1
        for n in range(4 * 365 + 1):
            day = start + timedelta(days=n)
            if day.month in self._cron.months and self._cron.match_day(day):
                if previous is not None:
                    shortest = min(shortest, n - previous)
                    if shortest == 1:
                        break
                previous = n
        return shortest


def _first_true(lo: datetime, hi: datetime, pred: Callable[[datetime], bool]) -> datetime:
    """Return the first whole second in (lo, hi] where `pred` holds; pred(hi) must hold."""
    low, high = 0, int((hi - lo).total_seconds())
    # Invariant: pred fails at lo + low seconds and holds at lo + high seconds.
    while high - low > 1:
        mid = (low + high) // 2
        if pred(lo + timedelta(seconds=mid)):
            high = mid
        else:
            low = mid
    return lo + timedelta(seconds=high)


def _load_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        # ZoneInfo raises ValueError for keys such as "../x" or absolute paths.
        raise CronError(f"unknown time zone {name!r}") from exc
