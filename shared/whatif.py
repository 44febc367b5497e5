"""What-if (issue 8): what tiering and commissions share to replay the history under a draft
policy: the draft and the versions it replaces, reading a log without writing, and the language
of tiering's request to commissions and of commissions' answer.

Decision 13 (``docs/decisions/0013-what-if.md``) says how each service replays its part.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.postgres import PostgresApplicationRecorder
from pydantic import BaseModel, Field

from shared.contracts import PolicyAdopted, TierChanged
from shared.policy import ProgramPolicy
from shared.runtime import ServiceRuntime

WHAT_IF_LOG = "what-if"
"""The log named by what only the replay decides (the draft's adoption)."""

_DRAFT_PROGRAM = uuid5(NAMESPACE_URL, "urn:dealreg:what-if:draft")


class DraftCurrencyError(ValueError):
    """A draft that counts in another reporting currency than the program's."""


@dataclass(frozen=True)
class DraftPolicy:
    """A policy document tried on the history: in force from a day on (from the beginning when
    no day is given), it replaces every live version from that day, as an adoption would; the
    live versions before that day stay."""

    policy: ProgramPolicy
    effective_on: date | None = None

    VERSION: ClassVar[int] = 0
    """The draft's number among the versions of a replay (live versions count from 1)."""
    ADOPTED_BY: ClassVar[str] = "what-if"

    @property
    def first_day(self) -> date:
        return self.effective_on or date.min

    def replaces(self, effective_on: date) -> bool:
        """Whether a live version in force from a day gives way to the draft."""
        return effective_on >= self.first_day

    def check_currency(self, reporting_currency: str) -> None:
        if self.policy.reporting_currency != reporting_currency:
            raise DraftCurrencyError(
                f"the reporting currency is {reporting_currency}; a draft cannot count in "
                f"{self.policy.reporting_currency}"
            )

    def adoption(self) -> dict[str, Any]:
        """The fields of the draft's ``PolicyAdopted`` (tiering's ``Program.policy_adopted``)."""
        return {
            "version": self.VERSION,
            "effective_on": self.first_day,
            "document": self.policy.model_dump(mode="json"),
            "adopted_by": self.ADOPTED_BY,
            "note": "the draft of a what-if",
        }

    def as_published(self) -> PolicyAdopted:
        """The draft as commissions follows a version tiering adopted, before any event."""
        return PolicyAdopted(
            log=WHAT_IF_LOG,
            position=0,
            stream_version=1,
            occurred_at=datetime.min.replace(tzinfo=UTC),
            program_id=_DRAFT_PROGRAM,
            **self.adoption(),
        )


# --- reading a log ---------------------------------------------------------------------------


def reader_of(runtime: ServiceRuntime, log: str) -> PostgresApplicationRecorder:
    """A reader of a log the service already holds (its own, or one it follows): a replay opens
    no connection pool of its own."""
    if log == runtime.name:
        recorder = runtime.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        return recorder
    for follower in runtime.followers:
        if follower.source.log == log:
            return follower.source.recorder
    raise LookupError(f"the {runtime.name} service does not follow the {log} log")


def head_of(recorder: PostgresApplicationRecorder) -> int:
    return recorder.max_notification_id() or 0


def notifications(
    recorder: PostgresApplicationRecorder,
    *,
    through: int,
    topics: Sequence[str] = (),
    page: int = 1000,
) -> Iterator[Any]:
    """Every notification of a log up to a position, in position order, page by page (a read:
    nothing is locked or written)."""
    position = 0
    while position < through:
        found = recorder.select_notifications(
            start=position, limit=page, stop=through, topics=topics, inclusive_of_start=False
        )
        if not found:
            return
        yield from found
        position = found[-1].id


# --- tiering asks, commissions answers -------------------------------------------------------


class ReadThrough(BaseModel):
    """The last position of each log the replay reads, so that both services replay the same
    history (events recorded meanwhile are left for the next what-if)."""

    registration: int = Field(ge=0)
    tiering: int = Field(ge=0)


class StatementsWhatIfRequest(BaseModel):
    """Tiering's request: the draft, and the tier changes its replay decided under it."""

    document: dict[str, Any] = Field(description="The draft policy document (as adopted)")
    effective_on: date | None = Field(
        default=None, description="The draft's first day; none: it replaces every version"
    )
    tier_changes: list[TierChanged] = Field(
        description="Every tier change of the draft's history, each stamped (occurred_at) with "
        "the recorded time of what triggered it"
    )
    read_through: ReadThrough | None = Field(
        default=None, description="Positions to read up to; none: each log's head"
    )


class LineRun(BaseModel):
    """A statement line as one run decided it."""

    rule: str
    rate: Decimal
    base: Decimal
    amount: Decimal
    explanation: str


class LineDifference(BaseModel):
    """A line that one run has and the other has not, or has otherwise."""

    line_id: UUID
    contract_id: UUID
    customer_key: str
    earned_in: str
    baseline: LineRun | None
    draft: LineRun | None


class StatementDifference(BaseModel):
    """A partner's statement for a month, in one currency, as the two runs have it."""

    partner_id: UUID
    period: str
    currency: str
    baseline: Decimal = Field(description="Total of the lines, live policy")
    draft: Decimal = Field(description="Total of the lines, draft policy")
    difference: Decimal = Field(description="draft - baseline")
    lines: list[LineDifference]


class RefusedElection(BaseModel):
    """A premium associate election (or withdrawal) the draft's terms would have refused."""

    partner_id: UUID
    at: datetime
    reason: str


class StatementsWhatIf(BaseModel):
    """Commissions' answer."""

    statements: list[StatementDifference]
    statements_compared: int
    refused_elections: list[RefusedElection] = []
