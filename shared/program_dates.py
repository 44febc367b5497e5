"""The days a program speaks of: 1900-01-01 to 2999-12-31.

Every date a request carries lies in this range, and so does the last day of every term it sets
(a start and its months). The program's arithmetic reaches a little beyond the days it is given:
a renewal falls due 90 days before a term ends, metrics look back over a trailing window, a
renewal starts the day after an end. Python's dates stop at year 1 and year 9999, so a request
dated 0001-01-01 or 9999-12-01 once raised OverflowError after its event was recorded. Within
this range every derived date is representable, with centuries to spare on either side, and the
range still holds any real agreement, backdated or long-running.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)


def in_program(day: date) -> bool:
    """True for a day (or the day of an instant) inside the program's range."""
    return FIRST_DAY <= (day.date() if isinstance(day, datetime) else day) <= LAST_DAY


class OutsideProgramError(ValueError):
    """A day outside the program's range, met outside request validation (an instant the clock
    is asked to run to). Answered 422 naming ``field``, as a request's own dates are."""

    def __init__(self, day: date, field: str) -> None:
        super().__init__(outside_program_error(day).message())
        self.field = field


def outside_program_error(day: date) -> PydanticCustomError:
    return PydanticCustomError(
        "date_outside_program",
        "{day} is outside the program's days: a date lies from {first} to {last}",
        {"day": day.isoformat(), "first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat()},
    )


_WRITTEN_OUT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def written_out(value: object) -> object:
    """A date or an instant as ISO 8601 text, not a count of seconds: ``2027-01-31`` or
    ``2027-01-31T09:00:00Z``, where a lax reading would take ``0`` for 1970-01-01."""
    if isinstance(value, str) and not _WRITTEN_OUT.match(value):
        raise PydanticCustomError(
            "date_written_out",
            "a date is written YYYY-MM-DD (an instant YYYY-MM-DDThh:mm:ss with its zone)",
        )
    if isinstance(value, int | float):
        raise PydanticCustomError(
            "date_written_out",
            "a date is written as text, YYYY-MM-DD (an instant YYYY-MM-DDThh:mm:ss with its zone)",
        )
    return value


def _program_day(day: date) -> date:
    if not in_program(day):
        raise outside_program_error(day)
    return day


ProgramDate = Annotated[date, BeforeValidator(written_out), AfterValidator(_program_day)]
"""A date inside the program's range, for a query parameter (request bodies check every date
they hold: ``shared.edge.RequestModel``)."""
ProgramInstant = Annotated[
    AwareDatetime, BeforeValidator(written_out), AfterValidator(_program_day)
]
"""An instant (with its zone) on a day inside the program's range, for a query parameter."""
