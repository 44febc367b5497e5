"""What-if (issue 8), tiering's part: its history replayed under a draft policy, in memory.

Facts are recorded again on fresh aggregates through their own methods (each triggers its event
anew); decisions (promotions, reviews, demotions, inactivity flags) are dropped from the log and
taken again where the live service took them: after a fact, as the command or the follower that
recorded it did, and at each recorded run of the clock, by the clock's own jobs reading this
in-memory history as their register. One run under the live versions (the baseline, which
reproduces the live history) and one under the draft, side by side, are compared partner by
partner. Logs are only read; nothing is written (decision 13).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from bisect import insort
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.postgres import PostgresApplicationRecorder
from pydantic import BaseModel, Field

from services.tiering.application import (
    FOLLOWS,
    Members,
    PolicyTakesEffect,
    QuarterlyReview,
    TermsStart,
    TieringApplication,
    by_days_of_note,
)
from services.tiering.domain.partners import Partner, renewal_booking_id
from services.tiering.domain.program import Program
from shared.clock import Clock, ClockJob
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    DealRegistered,
    PublishedEvent,
    PublishedLanguage,
    RegistrationApproved,
    TierChanged,
)
from shared.policy import Motion, PolicyVersion
from shared.runtime import ServiceRuntime
from shared.whatif import (
    DraftPolicy,
    ReadThrough,
    RefusedElection,
    StatementDifference,
    StatementsWhatIf,
    StatementsWhatIfRequest,
    head_of,
    notifications,
    reader_of,
)

ENTRY_REASONS = frozenset({"enrolled", "addendum signed"})
"""A ``TierChanged`` with one of these reasons is a fact (a motion entered); any other is a
decision."""

RECORDED_BY: dict[str, str] = {
    "MembershipChanged": "membership_changed",
    "RegionsChanged": "regions_changed",
    "ContractBooked": "contract_booked",
    "BookingCancelled": "booking_cancelled",
    "RegistrationApprovalCounted": "registration_approval_counted",
    "TrainingCompleted": "training_completed",
    "IndividualCertified": "individual_certified",
    "ProjectCompleted": "project_completed",
    "IntegrationCertified": "integration_certified",
    "JointCustomerRecorded": "joint_customer_recorded",
    "ManagedRevenueReported": "managed_revenue_reported",
    "TierChanged": "tier_changed",
}
"""Each fact of a partner's stream, and the method of ``Partner`` that records it."""

BOOKED_FROM_REGISTRATION = frozenset(
    {"ContractBooked", "BookingCancelled", "RegistrationApprovalCounted"}
)
"""Facts tiering's follower books from what registration publishes; it promoted on the day the
published event occurred (``TieringApplication.policy``)."""

REGISTRATION = PublishedLanguage("registration", [DealRegistered, *FOLLOWS])

_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def _payload(event: Any) -> dict[str, Any]:
    """An event's own fields: the arguments of the method that triggered it."""
    return {
        f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name not in _ENVELOPE
    }


@dataclass
class RegistrationHistory:
    """What the replay needs of registration's log: the program day on which registration
    learnt each fact that a partner's stream booked (the follower promoted on that day), the
    terms reported before they start, and when each partner registered deals (the activity a
    quarterly review reads)."""

    signed: dict[UUID, date] = field(default_factory=dict)
    renewed: dict[UUID, date] = field(default_factory=dict)
    """By the renewal's booking id."""
    cancelled: dict[UUID, date] = field(default_factory=dict)
    approved: dict[UUID, date] = field(default_factory=dict)
    registered: dict[UUID, list[tuple[datetime, date]]] = field(default_factory=dict)
    """By partner: when each registration was recorded, and its program day."""
    starting: list[tuple[date, UUID]] = field(default_factory=list)

    def take(self, event: PublishedEvent) -> None:
        if isinstance(event, DealRegistered):
            submitted = event.submitted_at.date()
            insort(self.registered.setdefault(event.partner_id, []), (event.occurred_at, submitted))
            if event.status == "approved":
                self.approved.setdefault(event.registration_id, submitted)
        elif isinstance(event, ContractSigned):
            self.signed.setdefault(event.contract_id, event.reported_on)
            self._starting(event)
        elif isinstance(event, ContractRenewed):
            booking = renewal_booking_id(event.contract_id, event.start_date)
            self.renewed.setdefault(booking, event.reported_at.date())
            self._starting(event)
        elif isinstance(event, ContractCancelled):
            self.cancelled.setdefault(event.contract_id, event.reported_at.date())
        elif isinstance(event, RegistrationApproved):
            self.approved.setdefault(event.registration_id, event.approved_on)

    def _starting(self, event: ContractSigned | ContractRenewed) -> None:
        if event.partner_id is not None and event.start_date > event.reported_at.date():
            insort(self.starting, (event.start_date, event.partner_id))

    def published_on(self, fact: Any, partner: Partner) -> date | None:
        """The program day on which registration learnt what a booked fact records."""
        kind = type(fact).__name__
        if kind == "ContractBooked":
            renewal = fact.booking_id != fact.contract_id
            return (self.renewed if renewal else self.signed).get(fact.booking_id)
        if kind == "BookingCancelled":
            booking = partner.facts.bookings.get(fact.booking_id)
            return self.cancelled.get(booking.contract_id) if booking else None
        if kind == "RegistrationApprovalCounted":
            return self.approved.get(fact.registration_id)
        return None

    def last_registered(self, partner_id: UUID, as_of: datetime) -> date | None:
        """The last registration recorded by an instant (as the activity view had it then)."""
        recorded = self.registered.get(partner_id, [])
        known = [day for at, day in recorded if at <= as_of]
        return max(known, default=None)

    def terms_starting(self, after: date, until: date) -> list[tuple[date, UUID]]:
        return sorted({(day, p) for day, p in self.starting if after < day <= until})


@dataclass(frozen=True)
class DecidedTierChange:
    """A tier change of a replay, with the recorded time and the position of what triggered it
    (the instant commissions compares a contract's signature with)."""

    partner_id: UUID
    motion: str
    previous_tier: str | None
    tier: str
    effective_on: date
    reason: str
    metrics: dict[str, Decimal]
    registration_position: int | None
    recorded_at: datetime
    position: int
    stream_version: int

    @property
    def key(self) -> tuple[str, str | None, str, date, str]:
        """What makes two histories differ."""
        return (self.motion, self.previous_tier, self.tier, self.effective_on, self.reason)

    def as_published(self) -> TierChanged:
        return TierChanged(
            log="tiering",
            position=self.position,
            stream_version=self.stream_version,
            occurred_at=self.recorded_at,
            partner_id=self.partner_id,
            motion=self.motion,
            previous_tier=self.previous_tier,
            tier=self.tier,
            effective_on=self.effective_on,
            reason=self.reason,
            metrics=self.metrics,
            registration_position=self.registration_position,
        )


class Replay:
    """One run of tiering's history in memory, under the live versions or a draft. The clock's
    jobs read it as the application's register (``Register``), and it is its own ``Members``."""

    def __init__(self, registration: RegistrationHistory, draft: DraftPolicy | None = None):
        self.registration = registration
        self.draft = draft
        self.partners: dict[UUID, Partner] = {}
        self._program = Program()
        if draft is not None:
            self._program.policy_adopted(**draft.adoption())
        self.clock_at: datetime | None = None
        """How far tiering's clock had run, at the event being replayed."""
        self.recorded_at = datetime.min.replace(tzinfo=UTC)
        """The recorded time of the event being replayed."""
        self.changes: list[DecidedTierChange] = []
        self._draft_day: datetime | None = None
        """The draft's first instant, until the replay has passed it."""
        if draft is not None and draft.effective_on is not None:
            self._draft_day = datetime.combine(draft.effective_on, time(0), UTC)
        self._policy_takes_effect = PolicyTakesEffect(self)
        self._clock_jobs: list[ClockJob] = [
            self._policy_takes_effect,
            TermsStart(self),
            QuarterlyReview(self),
        ]

    # --- the register the clock's jobs read ----------------------------------------------
    @property
    def members(self) -> Members:
        return self

    def ids(self) -> Sequence[UUID]:
        return sorted(p.id for p in self.partners.values() if p.offboarded_on is None)

    def last_registered(self, partner_id: UUID) -> date | None:
        return self.registration.last_registered(partner_id, self.recorded_at)

    def terms_starting(self, after: date, until: date) -> Sequence[tuple[date, UUID]]:
        return self.registration.terms_starting(after, until)

    def partner(self, partner_id: UUID) -> Partner:
        return self.partners[partner_id]

    def program(self) -> Program:
        return self._program

    # --- the history, event by event ---------------------------------------------------------
    @property
    def today(self) -> date:
        """The service's present when the event was recorded: the wall clock, or where the clock
        had been run to if later (``ServiceClock.time``)."""
        now = max(self.recorded_at, self.clock_at) if self.clock_at else self.recorded_at
        return now.date()

    def take(self, position: int, event: Any) -> None:
        self.recorded_at = event.timestamp
        self._take_effect_on_the_draft_day(position)
        touched: Iterable[Aggregate] = ()
        if isinstance(event, Clock.Advanced):  # type: ignore[attr-defined]
            touched = self._run_clock(event.until)
        elif isinstance(event, Program.Event):
            touched = self._program_event(event)
        elif isinstance(event, Partner.Event):
            touched = self._partner_event(event)
        self._collect(touched, position)

    def _run_clock(self, until: datetime) -> list[Aggregate]:
        changed = [
            aggregate
            for after, upto in by_days_of_note(self, self.clock_at, until)
            for job in self._clock_jobs
            for aggregate in job(after, upto)
        ]
        self.clock_at = until
        return changed

    def _take_effect_on_the_draft_day(self, position: int) -> None:
        """The clock's worker runs every minute: on the day a draft version takes effect, whoever
        it promotes is promoted then, as after an adoption; the live run that did so decided
        nothing and left no event to replay."""
        first_instant = self._draft_day
        if first_instant is None or self.recorded_at < first_instant:
            return
        self._draft_day = None
        if self.clock_at is not None and self.clock_at >= first_instant:
            return  # a recorded run of the clock crossed the day and took it
        recorded_at = self.recorded_at
        self.recorded_at = first_instant
        self._collect(
            self._policy_takes_effect(first_instant - timedelta(days=1), first_instant), position
        )
        self.recorded_at = recorded_at

    def _program_event(self, event: Any) -> list[Aggregate]:
        kind = type(event).__name__
        if kind == "PolicyAdopted":
            if self.draft is not None and self.draft.replaces(event.effective_on):
                return []
            self._program.policy_adopted(**_payload(event))
            if self.draft is not None:  # a version before the draft's day: the draft still follows
                self._program.policy_adopted(**self.draft.adoption())
            if event.effective_on <= self.today:  # in force from the day adopted: at once
                return self._promote_members()
        elif kind == "RatesPublished":
            self._program.rates_published(**_payload(event))
            return self._promote_members()
        return []

    def _promote_members(self) -> list[Aggregate]:
        """Rates convert amounts for the first time: whoever that promotes is promoted."""
        today = self.today
        policy = self._program.policy_on(today)
        members = [self.partners[partner_id] for partner_id in self.ids()]
        for partner in members:
            partner.promote_where_reached(policy, today, self._program.convert)
        return list(members)

    def _partner_event(self, event: Any) -> list[Aggregate]:
        kind = type(event).__name__
        if kind == "Enrolled":
            partner = Partner._create(
                Partner.Enrolled,
                id=event.originator_id,
                timestamp=event.timestamp,
                **_payload(event),
            )
            self.partners[partner.id] = partner
            return [partner]  # an enrolment promotes no one (``enrol_partner``)
        partner = self.partners[event.originator_id]
        decision = kind not in RECORDED_BY or (
            kind == "TierChanged" and event.reason not in ENTRY_REASONS
        )
        if decision:
            return []  # taken again: after the facts below, and by the clock
        day = self.today
        if kind in BOOKED_FROM_REGISTRATION:
            reported = self.registration.published_on(event, partner) or event.timestamp.date()
            day = max(reported, self.clock_at.date() if self.clock_at else reported)
        getattr(partner, RECORDED_BY[kind])(**_payload(event))
        if kind == "TierChanged" and event.reason == "enrolled":
            return [partner]
        if kind == "MembershipChanged" and event.change == "addendum_signed":
            return [partner]  # the motion's entry tier follows, then the promotion
        partner.promote_where_reached(self._program.policy_on(day), day, self._program.convert)
        return [partner]

    def _collect(self, touched: Iterable[Aggregate], position: int) -> None:
        seen: set[UUID] = set()
        for aggregate in touched:
            if aggregate.id in seen:
                continue
            seen.add(aggregate.id)
            for decided in aggregate.collect_events():
                if isinstance(decided, Partner.TierChanged):
                    self.changes.append(
                        DecidedTierChange(
                            partner_id=decided.originator_id,
                            motion=decided.motion,
                            previous_tier=decided.previous_tier,
                            tier=decided.tier,
                            effective_on=decided.effective_on,
                            reason=decided.reason,
                            metrics=decided.metrics,
                            registration_position=decided.registration_position,
                            recorded_at=self.recorded_at,
                            position=position,
                            stream_version=decided.originator_version,
                        )
                    )
        self._program.collect_events()

    # --- what it comes to ----------------------------------------------------------------
    def history(self, partner_id: UUID) -> dict[str, list[DecidedTierChange]]:
        by_motion: dict[str, list[DecidedTierChange]] = {}
        for change in self.changes:
            if change.partner_id == partner_id:
                by_motion.setdefault(change.motion, []).append(change)
        return by_motion


@dataclass(frozen=True)
class TierReplay:
    """Both runs of tiering's history, read up to the same positions."""

    baseline: Replay
    draft: Replay
    draft_policy: DraftPolicy
    read_through: ReadThrough

    def statements_request(self) -> StatementsWhatIfRequest:
        """What commissions needs to replay its own part under the draft."""
        return StatementsWhatIfRequest(
            document=self.draft_policy.policy.model_dump(mode="json"),
            effective_on=self.draft_policy.effective_on,
            tier_changes=[change.as_published() for change in self.draft.changes],
            read_through=self.read_through,
        )


class TieringWhatIf:
    """Replays tiering's log (and reads what it needs of registration's) under a draft."""

    def __init__(self, app: TieringApplication, registration: PostgresApplicationRecorder) -> None:
        self.app = app
        self.registration = registration

    @classmethod
    def of(cls, runtime: ServiceRuntime) -> TieringWhatIf:
        assert isinstance(runtime.app, TieringApplication)
        return cls(runtime.app, reader_of(runtime, "registration"))

    def check(self, draft: DraftPolicy) -> None:
        """A draft the program could adopt: counted in its reporting currency."""
        draft.check_currency(self.app.program().policies.latest.policy.reporting_currency)

    def run(self, draft: DraftPolicy) -> TierReplay:
        self.check(draft)
        own = self.app.recorder
        assert isinstance(own, PostgresApplicationRecorder)
        through = ReadThrough(registration=head_of(self.registration), tiering=head_of(own))
        history = RegistrationHistory()
        for notification in notifications(
            self.registration, through=through.registration, topics=REGISTRATION.topics
        ):
            published = REGISTRATION.decode(notification)
            if published is not None:
                history.take(published)
        baseline, drafted = Replay(history), Replay(history, draft)
        for notification in notifications(own, through=through.tiering):
            event = self.app.decode(notification)
            baseline.take(notification.id, event)
            drafted.take(notification.id, event)
        return TierReplay(baseline, drafted, draft, through)


# --- the report ------------------------------------------------------------------------------


Run = Literal["baseline", "draft"]


class TierChangeView(BaseModel):
    run: Run = Field(description="The history that has it")
    effective_on: date
    previous_tier: str | None
    tier: str
    reason: str


class MotionDifference(BaseModel):
    motion: str
    baseline: str | None = Field(description="The tier held at the end, under the live policy")
    draft: str | None = Field(description="The tier held at the end, under the draft")
    direction: Literal["lower", "higher", "same", "renamed"]
    changes: list[TierChangeView] = Field(
        description="The tier changes one history has and the other has not"
    )


class PartnerDifference(BaseModel):
    partner_id: UUID
    legal_name: str | None
    tiers: list[MotionDifference]
    statements: list[StatementDifference]


class VersionView(BaseModel):
    version: int
    draft: bool
    effective_on: date | None = Field(description="None: in force from the beginning")
    adopted_by: str
    note: str

    @classmethod
    def of(cls, version: PolicyVersion) -> VersionView:
        return cls(
            version=version.version,
            draft=version.adopted_by == DraftPolicy.ADOPTED_BY
            and version.version == DraftPolicy.VERSION,
            effective_on=None if version.effective_on == date.min else version.effective_on,
            adopted_by=version.adopted_by,
            note=version.note,
        )


class PolicyView(BaseModel):
    effective_on: date | None = Field(
        description="The draft's first day; none: it replaced every version from the beginning"
    )
    baseline_versions: list[VersionView]
    draft_versions: list[VersionView]


class WhatIfSummary(BaseModel):
    partners_replayed: int
    partners_listed: int
    motions_lower: int = Field(description="Motions that end at a lower tier under the draft")
    motions_higher: int
    statements_compared: int
    statements_differing: int
    difference: dict[str, Decimal] = Field(description="draft - baseline, per currency")
    refused_elections: list[RefusedElection]


class WhatIfReport(BaseModel):
    policy: PolicyView
    read_through: ReadThrough
    partners: list[PartnerDifference]
    summary: WhatIfSummary


def _direction(
    replay: TierReplay, motion: str, baseline: str | None, draft: str | None
) -> Literal["lower", "higher", "same", "renamed"]:
    """Where the draft leaves the motion, by the order of the draft's tiers (or the live ones,
    when the draft renamed them)."""
    if baseline == draft:
        return "same"
    for program in (replay.draft.program(), replay.baseline.program()):
        order = program.policies.latest.policy.tier_order(cast(Motion, motion))
        if baseline in order and draft in order:
            return "lower" if order.index(draft) < order.index(baseline) else "higher"
    return "renamed"


def _only_in(
    ours: list[DecidedTierChange], theirs: list[DecidedTierChange]
) -> list[DecidedTierChange]:
    """Our changes that their history has not (as many times as we have them)."""
    left = Counter(change.key for change in theirs)
    only = []
    for change in ours:
        if left[change.key]:
            left[change.key] -= 1
        else:
            only.append(change)
    return only


def tier_differences(replay: TierReplay, partner_id: UUID) -> list[MotionDifference]:
    baseline = replay.baseline.history(partner_id)
    draft = replay.draft.history(partner_id)
    differences = []
    for motion in sorted({*baseline, *draft}):
        before, after = baseline.get(motion, []), draft.get(motion, [])
        if [c.key for c in before] == [c.key for c in after]:
            continue
        held_before = _tier_held(replay.baseline, partner_id, motion)
        held_after = _tier_held(replay.draft, partner_id, motion)
        changes: list[tuple[Run, DecidedTierChange]] = [
            *(("baseline", c) for c in _only_in(before, after)),
            *(("draft", c) for c in _only_in(after, before)),
        ]
        differences.append(
            MotionDifference(
                motion=motion,
                baseline=held_before,
                draft=held_after,
                direction=_direction(replay, motion, held_before, held_after),
                changes=[
                    TierChangeView(
                        run=run,
                        effective_on=c.effective_on,
                        previous_tier=c.previous_tier,
                        tier=c.tier,
                        reason=c.reason,
                    )
                    for run, c in sorted(changes, key=lambda rc: (rc[1].effective_on, rc[0]))
                ],
            )
        )
    return differences


def _tier_held(replay: Replay, partner_id: UUID, motion: str) -> str | None:
    partner = replay.partners.get(partner_id)
    return partner.tiers.get(motion) if partner else None


def compose_report(replay: TierReplay, statements: StatementsWhatIf) -> WhatIfReport:
    """Both services' parts, partner by partner: tier differences, statement differences."""
    by_partner: dict[UUID, list[StatementDifference]] = {}
    for statement in statements.statements:
        by_partner.setdefault(statement.partner_id, []).append(statement)
    partners = []
    for partner_id in {*replay.baseline.partners, *replay.draft.partners, *by_partner}:
        tiers = tier_differences(replay, partner_id)
        if not tiers and partner_id not in by_partner:
            continue
        known = replay.baseline.partners.get(partner_id)
        partners.append(
            PartnerDifference(
                partner_id=partner_id,
                legal_name=known.legal_name if known else None,
                tiers=tiers,
                statements=by_partner.get(partner_id, []),
            )
        )
    partners.sort(key=lambda p: (p.legal_name or "", str(p.partner_id)))
    difference: dict[str, Decimal] = {}
    for statement in statements.statements:
        difference[statement.currency] = (
            difference.get(statement.currency, Decimal(0)) + statement.difference
        )
    motions = [m for p in partners for m in p.tiers]
    return WhatIfReport(
        policy=PolicyView(
            effective_on=replay.draft_policy.effective_on,
            baseline_versions=[VersionView.of(v) for v in replay.baseline.program().versions],
            draft_versions=[VersionView.of(v) for v in replay.draft.program().versions],
        ),
        read_through=replay.read_through,
        partners=partners,
        summary=WhatIfSummary(
            partners_replayed=len(replay.baseline.partners),
            partners_listed=len(partners),
            motions_lower=sum(1 for m in motions if m.direction == "lower"),
            motions_higher=sum(1 for m in motions if m.direction == "higher"),
            statements_compared=statements.statements_compared,
            statements_differing=len(statements.statements),
            difference=dict(sorted(difference.items())),
            refused_elections=statements.refused_elections,
        ),
    )


CSV_COLUMNS = (
    "kind",
    "partner_id",
    "legal_name",
    "motion",
    "baseline_tier",
    "draft_tier",
    "direction",
    "run",
    "effective_on",
    "previous_tier",
    "tier",
    "reason",
    "period",
    "currency",
    "baseline",
    "draft",
    "difference",
    "line_id",
    "contract_id",
    "customer_key",
    "earned_in",
    "baseline_rule",
    "baseline_rate",
    "baseline_amount",
    "draft_rule",
    "draft_rate",
    "draft_amount",
)


def report_csv(report: WhatIfReport) -> str:
    """One flat table: a row per differing tier change (``tier_change``), per differing
    statement (``statement``, its totals) and per differing line (``statement_line``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for partner in report.partners:
        who = {"partner_id": partner.partner_id, "legal_name": partner.legal_name or ""}
        for motion in partner.tiers:
            for change in motion.changes:
                writer.writerow(
                    {
                        **who,
                        "kind": "tier_change",
                        "motion": motion.motion,
                        "baseline_tier": motion.baseline or "",
                        "draft_tier": motion.draft or "",
                        "direction": motion.direction,
                        "run": change.run,
                        "effective_on": change.effective_on.isoformat(),
                        "previous_tier": change.previous_tier or "",
                        "tier": change.tier,
                        "reason": change.reason,
                    }
                )
        for statement in partner.statements:
            totals = {
                "period": statement.period,
                "currency": statement.currency,
                "baseline": statement.baseline,
                "draft": statement.draft,
                "difference": statement.difference,
            }
            writer.writerow({**who, **totals, "kind": "statement"})
            for line in statement.lines:
                row: dict[str, Any] = {
                    **who,
                    "kind": "statement_line",
                    "period": statement.period,
                    "currency": statement.currency,
                    "line_id": line.line_id,
                    "contract_id": line.contract_id,
                    "customer_key": line.customer_key,
                    "earned_in": line.earned_in,
                }
                for run, decided in (("baseline", line.baseline), ("draft", line.draft)):
                    if decided is not None:
                        row[f"{run}_rule"] = decided.rule
                        row[f"{run}_rate"] = decided.rate
                        row[f"{run}_amount"] = decided.amount
                writer.writerow(row)
    return out.getvalue()
