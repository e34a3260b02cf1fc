"""eKuiper's date and time functions, format_time with eKuiper's pattern letters, and tstamp.

Times are rendered in UTC (eKuiper renders them in its configured time zone,
the host's by default).  A time argument may be a datetime (from cast or
another time function), milliseconds since the epoch, or RFC 3339 text.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import time
from collections.abc import Callable
from typing import Any

from loader.rules.functions.conversion_functions import to_datetime
from loader.rules.functions.registry import Builtin, table
from loader.rules.functions.values import UTC, DateTime, FunctionError, to_int

_PATTERN = re.compile(r"G+|Y+|y+|M+|d+|E+|H+|h+|a+|m+|s+|S+|z+|Z+|X+")


def _zone(moment: _dt.datetime, colon: bool, short: bool = False) -> str:
    offset = moment.utcoffset() or _dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    if short:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}:{rest:02d}" if colon else f"{sign}{hours:02d}{rest:02d}"


def _field(token: str, moment: _dt.datetime) -> str:
    letter, width = token[0], len(token)
    if letter in "Yy":
        return f"{moment.year % 100:02d}" if width == 2 else f"{moment.year:04d}"
    if letter == "M":
        if width >= 4:
            return calendar.month_name[moment.month]
        if width == 3:
            return calendar.month_abbr[moment.month]
        return f"{moment.month:02d}" if width == 2 else str(moment.month)
    if letter == "E":
        return calendar.day_name[moment.weekday()] if width >= 4 else calendar.day_abbr[moment.weekday()]
    numbers = {"d": moment.day, "H": moment.hour, "h": (moment.hour % 12) or 12, "m": moment.minute, "s": moment.second}
    if letter in numbers:
        return f"{numbers[letter]:02d}" if width >= 2 else str(numbers[letter])
    if letter == "S":
        return "." + f"{moment.microsecond:06d}"[: min(width, 6)]
    if letter == "a":
        return "AM" if moment.hour < 12 else "PM"
    if letter == "G":
        return "AD"
    if letter == "z":
        return moment.tzname() or "UTC"
    if letter == "Z":
        return _zone(moment, colon=False)
    return _zone(moment, colon=width >= 3, short=width == 1)  # X, XX, XXX


def format_moment(moment: _dt.datetime, pattern: str) -> str:
    """``moment`` in eKuiper's format_time pattern: runs of pattern letters are fields, the rest literal text."""
    return _PATTERN.sub(lambda found: _field(found.group(0), moment), pattern)


def _moment(value: Any) -> _dt.datetime:
    return to_datetime(value).moment.astimezone(UTC)


def _format_time(args: list[Any]) -> Any:
    if not isinstance(args[1], str):
        raise FunctionError('format_time\'s format must be a string such as "YYYY-MM-dd HH:mm:ss"')
    return format_moment(_moment(args[0]), args[1])


def _now(args: list[Any]) -> Any:
    precision = to_int(args[0], "now's fractional second precision") if args else 0
    if not 0 <= precision <= 6:
        raise FunctionError("now's fractional second precision is 0 to 6")
    moment = _dt.datetime.now(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + ("." + f"{moment.microsecond:06d}"[:precision] if precision else "")


def _cur_date(args: list[Any]) -> Any:
    return _dt.datetime.now(UTC).strftime("%Y-%m-%d")


def _cur_time(args: list[Any]) -> Any:
    return _dt.datetime.now(UTC).strftime("%H:%M:%S")


def _tstamp(args: list[Any]) -> Any:
    return time.time_ns() // 1_000_000


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: Any) -> _dt.timedelta:
    """Go's duration text (1h30m, -10s, 250ms) as a timedelta."""
    if not isinstance(text, str):
        raise FunctionError('a duration is text such as "1h30m"')
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    parts = _DURATION.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise FunctionError(f"cannot read duration {text!r}: use e.g. 1h30m10s100ms")
    return _dt.timedelta(seconds=sign * sum(float(n) * _UNIT_S[u] for n, u in parts))


def _date_calc(args: list[Any]) -> Any:
    return DateTime(_moment(args[0]) + _duration(args[1]))


def _date_diff(args: list[Any]) -> Any:
    return (_moment(args[0]).date() - _moment(args[1]).date()).days


def _part(name: str, read: Callable[[_dt.datetime], int | str]) -> Builtin:
    return Builtin(name, lambda args: read(_moment(args[0])), 1, 1)


def _last_day(moment: _dt.datetime) -> str:
    last = calendar.monthrange(moment.year, moment.month)[1]
    return moment.replace(day=last).strftime("%Y-%m-%d")


def _from_unix_time(args: list[Any]) -> Any:
    seconds = args[0]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise FunctionError("from_unix_time takes seconds since the epoch")
    return DateTime(_dt.datetime.fromtimestamp(seconds, UTC))


TIME = table(
    Builtin("now", _now, 0, 1),
    Builtin("cur_date", _cur_date, 0, 0),
    Builtin("cur_time", _cur_time, 0, 0),
    Builtin("format_time", _format_time, 2, 2),
    Builtin("tstamp", _tstamp, 0, 0),
    Builtin("date_calc", _date_calc, 2, 2),
    Builtin("date_diff", _date_diff, 2, 2),
    _part("day_name", lambda m: calendar.day_name[m.weekday()]),
    _part("day_of_month", lambda m: m.day),
    _part("day_of_week", lambda m: (m.isoweekday() % 7) + 1),
    _part("day_of_year", lambda m: m.timetuple().tm_yday),
    _part("hour", lambda m: m.hour),
    _part("minute", lambda m: m.minute),
    _part("second", lambda m: m.second),
    _part("microsecond", lambda m: m.microsecond),
    _part("month", lambda m: m.month),
    _part("month_name", lambda m: calendar.month_name[m.month]),
    _part("year", lambda m: m.year),
    _part("last_day", _last_day),
    Builtin("from_unix_time", _from_unix_time, 1, 1),
    aliases={
        "current_timestamp": "now",
        "local_time": "now",
        "local_timestamp": "now",
        "current_date": "cur_date",
        "current_time": "cur_time",
        "day": "day_of_month",
    },
)
