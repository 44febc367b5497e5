"""Opaque cursors for keyset-paged lists."""

from __future__ import annotations

import base64
import json
from typing import Any

from shared.edge import parse_json, unstorable
from shared.problems import Problem


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[str] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = parse_json(base64.urlsafe_b64decode(padded.encode()))
    except ValueError as error:
        raise Problem(400, "bad-cursor", "The cursor is not one this API handed out.") from error
    if not isinstance(values, list) or len(values) != arity:
        raise Problem(400, "bad-cursor", "The cursor is not one this API handed out.")
    decoded = [str(v) for v in values]
    if any(unstorable(value) for value in decoded):
        raise Problem(400, "bad-cursor", "The cursor is not one this API handed out.")
    return decoded
