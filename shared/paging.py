"""Opaque cursors for keyset-paged lists."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query

from shared.edge import parse_json, unstorable
from shared.problems import Problem

CURSOR_PATTERN = "^[A-Za-z0-9_-]{1,1000}$"

Cursor = Annotated[
    str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")
]


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unknown_cursor() -> Problem:
    """A cursor this API did not hand out names no page: 404, as an unknown id would."""
    return Problem(
        404,
        "unknown-cursor",
        "No page at this cursor: it is not one this API handed out. Start again without one.",
    )


def decode_cursor(cursor: str | None, *parsers: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """The values ``encode_cursor`` took, each read by its parser (``str``, ``int``, ``UUID``,
    ``datetime.fromisoformat``); None without a cursor."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = parse_json(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(parsers):
            raise unknown_cursor()
        decoded = [str(value) for value in values]
        if any(unstorable(value) for value in decoded):
            raise unknown_cursor()
        return tuple(parse(value) for parse, value in zip(parsers, decoded, strict=True))
    except (ValueError, TypeError) as error:
        raise unknown_cursor() from error
