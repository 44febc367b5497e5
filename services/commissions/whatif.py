"""What-if (issue 8), commissions' part: its decisions taken again, in memory, on the history
replayed under the live policy (the baseline) and under a draft, and the statements compared.

The inputs are what the service decided on, merged in the order they were recorded: the
contracts registration published, the tier changes and policy versions tiering published (for
the draft, the tier changes tiering's own replay decided and the draft's versions), and from
commissions' own log the premium associate elections and the runs of its clock. Each is decided
as ``CommissionsApplication.policy`` and ``MonthlyRun`` decide it, by the same rules, over
in-memory books. Logs are only read; nothing is written (decision 13).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic

from services.commissions.domain.contracts import Contract
from services.commissions.domain.partners import Account, ElectionError
from services.commissions.domain.rules import CommissionRules
from services.commissions.domain.statements import Line, Statement
from shared.clock import Clock
from shared.codec import register_transcodings
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    PartnerEnrolled,
    PolicyAdopted,
    PublishedEvent,
    PublishedLanguage,
    TierChanged,
)
from shared.runtime import ServiceRuntime
from shared.whatif import (
    DraftPolicy,
    LineDifference,
    LineRun,
    ReadThrough,
    RefusedElection,
    StatementDifference,
    StatementsWhatIf,
    head_of,
    notifications,
    reader_of,
)

REGISTRATION = PublishedLanguage(
    "registration", [ContractSigned, ContractRenewed, ContractCancelled]
)
TIERING = PublishedLanguage("tiering", [TierChanged, PolicyAdopted, PartnerEnrolled])
OWN_INPUTS = [
    get_topic(Account.PremiumAssociateElected),  # type: ignore[attr-defined]
    get_topic(Account.PremiumAssociateWithdrawn),  # type: ignore[attr-defined]
    get_topic(Clock.Advanced),  # type: ignore[attr-defined]
]
"""What commissions' own log holds that it did not decide on another service's event: the
partners' elections, and how far its clock ran."""


class MemoryBooks(Application[UUID]):
    """Commissions' aggregates in memory (the library's POPO persistence, through the same
    transcoding as PostgreSQL), and the two questions of the rules' ``Store`` answered as the
    ledger projection answers them: the rules' store for a what-if, and for the unit tests."""

    def __init__(self) -> None:
        super().__init__({"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.next_due: dict[UUID, date] = {}
        self.open_statements: dict[UUID, tuple[UUID, str]] = {}
        self.statements: set[UUID] = set()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        register_transcodings(transcoder)

    def keep(self, aggregates: Sequence[Aggregate]) -> None:
        """Save what one decision changed, and note what the clock will ask of it."""
        for aggregate in aggregates:
            if isinstance(aggregate, Contract):
                due = aggregate.next_due()
                if due is None:
                    self.next_due.pop(aggregate.id, None)
                else:
                    self.next_due[aggregate.id] = due
            elif isinstance(aggregate, Statement):
                self.statements.add(aggregate.id)
                if aggregate.issued is None:
                    self.open_statements[aggregate.id] = (aggregate.partner_id, aggregate.period)
                else:
                    self.open_statements.pop(aggregate.id, None)
        self.save(*aggregates)

    # --- the Store port -----------------------------------------------------------------
    def find(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate

    def contracts_due(self, on: date) -> list[UUID]:
        due = [(day, contract_id) for contract_id, day in self.next_due.items() if day <= on]
        return [contract_id for _, contract_id in sorted(due)]

    def statements_open(self, through: str) -> list[UUID]:
        found = [
            (partner_id, period, statement_id)
            for statement_id, (partner_id, period) in self.open_statements.items()
            if period <= through
        ]
        return [statement_id for _, _, statement_id in sorted(found)]

    # --- what it shows ------------------------------------------------------------------
    def statement(self, statement_id: UUID) -> Statement:
        statement: Statement = self.repository.get(statement_id)
        return statement

    def all_statements(self) -> list[Statement]:
        return [self.statement(statement_id) for statement_id in sorted(self.statements)]


@dataclass(frozen=True)
class Recorded:
    """An input of a replay, at the instant its log recorded it."""

    at: datetime
    log: str
    position: int
    event: Any


class Replay:
    """One run of commissions' history: one decision at a time, each saved, as the service
    decides (``CommissionsApplication.policy``, ``MonthlyRun``)."""

    def __init__(self, draft: DraftPolicy | None = None) -> None:
        self.books = MemoryBooks()
        self.draft = draft
        self.refused: list[RefusedElection] = []
        if draft is not None:
            self.decide(draft.as_published())

    def take(self, recorded: Recorded) -> None:
        event = recorded.event
        if isinstance(event, PolicyAdopted):
            if self.draft is not None and self.draft.replaces(event.effective_on):
                return
            self.decide(event)
            if self.draft is not None:  # a version before the draft's day: the draft follows
                self.decide(self.draft.as_published())
        elif isinstance(event, PublishedEvent):
            self.decide(event)
        elif isinstance(event, Clock.Advanced):  # type: ignore[attr-defined]
            self.run_clock(event.until)
        elif isinstance(event, Account.PremiumAssociateElected):  # type: ignore[attr-defined]
            self._elect(event.originator_id, event.elected_at, event.by, withdraw=False)
        elif isinstance(event, Account.PremiumAssociateWithdrawn):  # type: ignore[attr-defined]
            self._elect(event.originator_id, event.withdrawn_at, event.by, withdraw=True)

    def decide(self, event: PublishedEvent) -> None:
        """What another service published (``CommissionsApplication.policy``)."""
        rules = CommissionRules(self.books)
        rules.decide(event)
        self.books.keep(rules.changed())

    def run_clock(self, until: datetime) -> None:
        """Time run up to an instant (``MonthlyRun``)."""
        rules = CommissionRules(self.books)
        rules.run(until)
        self.books.keep(rules.changed())

    def _elect(self, partner_id: UUID, at: datetime, by: str, *, withdraw: bool) -> None:
        rules = CommissionRules(self.books)
        try:
            if withdraw:
                rules.withdraw_premium_associate(partner_id, at=at, by=by)
            else:
                rules.elect_premium_associate(partner_id, at=at, by=by)
        except ElectionError as refused:  # the draft's terms may not entitle the partner
            self.refused.append(RefusedElection(partner_id=partner_id, at=at, reason=str(refused)))
            return
        self.books.keep(rules.changed())


def in_recorded_order(*feeds: Iterable[Recorded]) -> list[Recorded]:
    return sorted(
        (recorded for feed in feeds for recorded in feed),
        key=lambda r: (r.at, r.log, r.position),
    )


@dataclass(frozen=True)
class StatementReplay:
    baseline: Replay
    draft: Replay

    def differences(self) -> StatementsWhatIf:
        baseline = {s.id: s for s in self.baseline.books.all_statements()}
        draft = {s.id: s for s in self.draft.books.all_statements()}
        differences = []
        for statement_id in sorted({*baseline, *draft}):
            before, after = baseline.get(statement_id), draft.get(statement_id)
            differences.extend(compare_statements(before, after))
        differences.sort(key=lambda d: (str(d.partner_id), d.period, d.currency))
        return StatementsWhatIf(
            statements=differences,
            statements_compared=len({*baseline, *draft}),
            refused_elections=self.draft.refused,
        )


def _run(line: Line) -> LineRun:
    return LineRun(
        rule=line.rule,
        rate=line.rate,
        base=line.base.amount,
        amount=line.amount.amount,
        explanation=line.explanation,
    )


def _decided(line: Line) -> tuple[str, Decimal, Decimal, Decimal]:
    """What a line pays, whatever its explanation says."""
    return (line.rule, line.rate, line.base.amount, line.amount.amount)


def compare_statements(
    baseline: Statement | None, draft: Statement | None
) -> list[StatementDifference]:
    """One difference per currency in which the statement's lines differ."""
    some = baseline or draft
    assert some is not None
    before = {line.line_id: line for line in (baseline.lines if baseline else [])}
    after = {line.line_id: line for line in (draft.lines if draft else [])}
    differences = []
    currencies = {line.amount.currency for line in (*before.values(), *after.values())}
    for currency in sorted(currencies):
        lines = []
        for line_id in [*before, *(i for i in after if i not in before)]:
            was, now = before.get(line_id), after.get(line_id)
            either = was or now
            assert either is not None
            if either.amount.currency != currency:
                continue
            if was is not None and now is not None and _decided(was) == _decided(now):
                continue
            lines.append(
                LineDifference(
                    line_id=line_id,
                    contract_id=either.contract_id,
                    customer_key=either.customer_key,
                    earned_in=either.earned_in,
                    baseline=_run(was) if was else None,
                    draft=_run(now) if now else None,
                )
            )
        if not lines:
            continue
        total_before = sum(
            (line.amount.amount for line in before.values() if line.amount.currency == currency),
            Decimal(0),
        )
        total_after = sum(
            (line.amount.amount for line in after.values() if line.amount.currency == currency),
            Decimal(0),
        )
        differences.append(
            StatementDifference(
                partner_id=some.partner_id,
                period=some.period,
                currency=currency,
                baseline=total_before,
                draft=total_after,
                difference=total_after - total_before,
                lines=lines,
            )
        )
    return differences


class CommissionsWhatIf:
    """Reads what commissions decided on (its own log and the two it follows), never writes."""

    def __init__(
        self,
        own: PostgresApplicationRecorder,
        decode: Any,
        registration: PostgresApplicationRecorder,
        tiering: PostgresApplicationRecorder,
    ) -> None:
        self.own = own
        self.decode = decode
        self.registration = registration
        self.tiering = tiering

    @classmethod
    def of(cls, runtime: ServiceRuntime) -> CommissionsWhatIf:
        return cls(
            reader_of(runtime, runtime.name),
            runtime.app.decode,
            reader_of(runtime, "registration"),
            reader_of(runtime, "tiering"),
        )

    def heads(self) -> ReadThrough:
        return ReadThrough(registration=head_of(self.registration), tiering=head_of(self.tiering))

    def run(
        self,
        draft: DraftPolicy,
        tier_changes: Sequence[TierChanged],
        read_through: ReadThrough | None = None,
    ) -> StatementReplay:
        through = read_through or self.heads()
        common = [
            *self._published(self.registration, REGISTRATION, through.registration),
            *self._own(),
        ]
        tiering = self._published(self.tiering, TIERING, through.tiering)
        # the draft's tiers are its own; the versions and the partners' functions are tiering's
        versions = [r for r in tiering if isinstance(r.event, PolicyAdopted | PartnerEnrolled)]
        drafted = [Recorded(c.occurred_at, c.log, c.position, c) for c in tier_changes]
        baseline, replayed = Replay(), Replay(draft)
        for recorded in in_recorded_order(common, tiering):
            baseline.take(recorded)
        for recorded in in_recorded_order(common, versions, drafted):
            replayed.take(recorded)
        return StatementReplay(baseline, replayed)

    def compare(
        self,
        draft: DraftPolicy,
        tier_changes: Sequence[TierChanged],
        read_through: ReadThrough | None = None,
    ) -> StatementsWhatIf:
        return self.run(draft, tier_changes, read_through).differences()

    def _published(
        self, recorder: PostgresApplicationRecorder, language: PublishedLanguage, through: int
    ) -> list[Recorded]:
        found = []
        for notification in notifications(recorder, through=through, topics=language.topics):
            event = language.decode(notification)
            if event is not None:
                found.append(Recorded(event.occurred_at, event.log, event.position, event))
        return found

    def _own(self) -> list[Recorded]:
        found = []
        for notification in notifications(self.own, through=head_of(self.own), topics=OWN_INPUTS):
            event = self.decode(notification)
            found.append(Recorded(event.timestamp, "commissions", notification.id, event))
        return found
