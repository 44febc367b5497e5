"""How event state is written to and read from the logs, shared by producers and consumers."""

from __future__ import annotations

from datetime import date
from typing import Any

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    UUIDAsHex,
)

from shared.money import MoneyAsDict


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: Any) -> str:
        assert isinstance(obj, date)
        return obj.isoformat()

    def decode(self, data: Any) -> date:
        assert isinstance(data, str)
        return date.fromisoformat(data)


def register_transcodings(transcoder: JSONTranscoder) -> None:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), DateAsISO(), MoneyAsDict()):
        transcoder.register(transcoding)


def build_transcoder() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    register_transcodings(transcoder)
    return transcoder
