"""Tiering's commands, and its decisions on what registration publishes: thin; the rules live in
the Partner and Program aggregates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.projection import EventSourcedProjection

from services.tiering.domain.partners import Partner, Standing, renewal_booking_id
from services.tiering.domain.program import Program
from shared.clock import Clock
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    DealRegistered,
    PublishedEvent,
    RegistrationApproved,
)
from shared.database import Database
from shared.eventlog import ServiceApplication
from shared.policy import PolicyVersion, ProgramPolicy

log = logging.getLogger(__name__)

FOLLOWS: list[type[PublishedEvent]] = [
    DealRegistered,
    RegistrationApproved,
    ContractSigned,
    ContractRenewed,
    ContractCancelled,
]
"""What tiering reads of registration's log."""


class Members(Protocol):
    """The member register, as projected: who to review, and when each last registered a deal
    (a registration that was never approved still shows the partner is active)."""

    def ids(self) -> Sequence[UUID]: ...

    def last_registered(self, partner_id: UUID) -> date | None: ...

    def terms_starting(self, after: date, until: date) -> Sequence[tuple[date, UUID]]:
        """Partners with a contract term reported before it starts, starting in (after,
        until], by day: on that day it starts to count."""
        ...


class Register(Protocol):
    """What the clock's jobs read: the members, each partner, the program. The application is
    one; a what-if replay's in-memory history is another."""

    @property
    def members(self) -> Members: ...

    def partner(self, partner_id: UUID) -> Partner: ...

    def program(self) -> Program: ...


class TieringApplication(ServiceApplication, EventSourcedProjection[UUID]):
    name = "tiering"

    def __init__(self, database: Database, *, members: Members) -> None:
        super().__init__(database)
        self.members = members

    # --- reading ----------------------------------------------------------------------
    def partner(self, partner_id: UUID) -> Partner:
        return self.get(partner_id, Partner)

    def clock_day(self) -> date | None:
        """The day tiering's clock was last run to (not the wall clock's)."""
        try:
            clock: Clock = self.repository.get(Clock.create_id(self.name))
        except AggregateNotFoundError:
            return None
        return clock.now.date() if clock.now else None

    def program(self) -> Program:
        """The program; before any policy change or rate, DOMAIN.md's defaults (not saved)."""
        try:
            return self.get(Program.create_id(), Program)
        except AggregateNotFoundError:
            return Program()

    def standing(
        self, partner_id: UUID, today: date, *, as_of: datetime | None = None
    ) -> tuple[Partner, PolicyVersion, list[Standing]]:
        """A partner's tiers and metrics on a day; ``as_of``: as recorded at that instant."""
        if as_of is None:
            partner, program = self.partner(partner_id), self.program()
        else:
            partner = self.get_as_of(partner_id, Partner, as_of)
            try:
                program = self.get_as_of(Program.create_id(), Program, as_of)
            except AggregateNotFoundError:
                program = Program()
        version = program.version_on(today)
        return partner, version, partner.standing(version.policy, today, program.convert)

    # --- membership -------------------------------------------------------------------
    def enrol_partner(
        self,
        *,
        legal_name: str,
        home_country: str,
        regions: list[str],
        motions: list[str],
        function: str,
        category: str,
        management: str,
        on: date,
    ) -> Partner:
        partner = Partner.enrol(
            legal_name=legal_name,
            home_country=home_country,
            regions=regions,
            motions=motions,
            function=function,
            category=category,
            management=management,
            on=on,
        )
        self.save(partner)
        return partner

    def sign_addendum(self, partner_id: UUID, motion: str, *, on: date, today: date) -> Partner:
        entry = self.program().policy_on(on).entry_tier(motion)  # type: ignore[arg-type]
        return self.record(
            partner_id, today, lambda p: p.sign_addendum(motion=motion, on=on, entry_tier=entry)
        )

    def record(self, partner_id: UUID, today: date, change: Callable[[Partner], Any]) -> Partner:
        """An achievement recorded by a channel manager, and any promotion it brings."""

        def attempt() -> Partner:
            partner = self.partner(partner_id)
            change(partner)
            program = self.program()
            partner.promote_where_reached(program.policy_on(today), today, program.convert)
            self.save(partner)
            return partner

        return self.retrying(attempt)

    # --- the program --------------------------------------------------------------------
    def adopt_policy(
        self, policy: ProgramPolicy, *, effective_on: date, today: date, by: str, note: str
    ) -> PolicyVersion:
        def attempt() -> PolicyVersion:
            program = self.program()
            version = program.adopt(
                policy, effective_on=effective_on, today=today, by=by, note=note
            )
            # In force from today: the clock has passed the day's start, so whoever it promotes
            # is promoted now (a later day is the clock's, ``PolicyTakesEffect``).
            promoted = self._promoted(program, today) if effective_on <= today else []
            self.save(program, *promoted)
            return version

        return self.retrying(attempt)

    def _promoted(self, program: Program, today: date) -> list[Partner]:
        policy, promoted = program.policy_on(today), []
        for partner_id in self.members.ids():
            partner = self.partner(partner_id)
            partner.promote_where_reached(policy, today, program.convert)
            if partner.pending_events:
                promoted.append(partner)
        return promoted

    def publish_rates(
        self, *, month: date, rates: dict[str, Decimal], by: str, today: date
    ) -> Program:
        """Rates for a month; amounts they convert for the first time may promote partners."""

        def attempt() -> Program:
            program = self.program()
            program.publish_rates(month=month, rates=rates, by=by)
            self.save(program, *self._promoted(program, today))
            return program

        return self.retrying(attempt)

    # --- what registration publishes --------------------------------------------------
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        partner_id = getattr(domain_event, "partner_id", None)
        if partner_id is None:
            return  # the vendor's own contract: no partner's tier moves
        try:
            partner = self.partner(partner_id)
        except AggregateNotFoundError:
            log.warning(
                "%s for partner %s, who is not a member", type(domain_event).__name__, partner_id
            )
            return
        reported = reported_on(domain_event)
        if reported is None or not self._note(partner, domain_event):
            return
        # Metrics as they stand on the day the fact became known: a late report promotes as of
        # then, never before; a term that starts later counts from its start (the clock's).
        # Known here no earlier than tiering's own clock stands (it may run ahead).
        day = max(reported, self.clock_day() or reported)
        program = self.program()
        partner.promote_where_reached(program.policy_on(day), day, program.convert)
        processing_event.collect_events(partner)

    @staticmethod
    def _note(partner: Partner, event: Any) -> bool:
        position: int = event.position
        if isinstance(event, ContractSigned):
            return partner.book(
                contract_id=event.contract_id,
                motion=event.motion or "sell",
                booked_on=event.start_date,
                ends_on=event.end_date,
                first_year_value=event.first_year_value,
                registration_position=position,
            )
        if isinstance(event, ContractRenewed):
            signed = partner.booking_of(event.contract_id)
            if signed is None or signed.motion != "sell":
                return False  # a referral is won once; its renewals are the vendor's
            return partner.book(
                booking_id=renewal_booking_id(event.contract_id, event.start_date),
                contract_id=event.contract_id,
                motion="sell",
                booked_on=event.start_date,
                ends_on=event.end_date,
                first_year_value=event.first_year_value,
                registration_position=position,
            )
        if isinstance(event, ContractCancelled):
            return partner.cancel_booking(
                contract_id=event.contract_id,
                on=event.effective_on,
                registration_position=position,
            )
        if isinstance(event, RegistrationApproved):
            return partner.count_approval(
                registration_id=event.registration_id,
                motion=event.motion,
                approved_on=event.approved_on,
                registration_position=position,
            )
        if isinstance(event, DealRegistered) and event.status == "approved":
            return partner.count_approval(
                registration_id=event.registration_id,
                motion=event.motion,
                approved_on=event.submitted_at.date(),
                registration_position=position,
            )
        return False


def reported_on(event: Any) -> date | None:
    """The program day on which registration learnt a fact (the day a tier may move for it)."""
    if isinstance(event, ContractSigned | ContractRenewed | ContractCancelled):
        return event.reported_at.date()
    if isinstance(event, RegistrationApproved):
        return event.approved_on
    if isinstance(event, DealRegistered):
        return event.submitted_at.date()
    return None


class TermsStart:
    """A contract term reported before its start counts from its start: whoever it promotes
    is promoted that day."""

    def __init__(self, app: Register) -> None:
        self.app = app

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        after = since.date() if since is not None else date.min
        if after >= until.date():
            return []
        program = self.app.program()
        changed: dict[UUID, Aggregate] = {}
        for day, partner_id in self.app.members.terms_starting(after, until.date()):
            partner = self.app.partner(partner_id)
            before = len(partner.pending_events)
            partner.promote_where_reached(program.policy_on(day), day, program.convert)
            if len(partner.pending_events) > before:
                changed[partner_id] = partner
        return list(changed.values())


class QuarterlyReview:
    """At the start of each quarter: demotions after the grace, non-performers flagged."""

    def __init__(self, app: Register) -> None:
        self.app = app

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        # The clock ticks every minute; only a tick that crosses a quarter reads the members.
        if since is not None and not quarter_starts(since.date(), until.date()):
            return []
        partners = [self.app.partner(partner_id) for partner_id in self.app.members.ids()]
        if not partners:
            return []
        start = since.date() if since else min(p.enrolled_on for p in partners)
        program = self.app.program()
        changed: dict[UUID, Aggregate] = {}
        for review_on in quarter_starts(start, until.date()):
            policy = program.policy_on(review_on)
            for partner in partners:
                if partner.enrolled_on < review_on and not partner.reviewed(review_on):
                    partner.review(
                        policy,
                        review_on,
                        program.convert,
                        last_registered=self.app.members.last_registered(partner.id),
                    )
                    changed[partner.id] = partner
        return list(changed.values())


class PolicyTakesEffect:
    """The day a policy version takes effect, whoever its thresholds now promote is promoted."""

    def __init__(self, app: Register) -> None:
        self.app = app

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        program = self.app.program()
        start = since.date() if since else date.min
        versions = program.changes_between(start, until.date())
        changed: dict[UUID, Aggregate] = {}
        for version in versions:
            for partner_id in self.app.members.ids():
                partner = changed.get(partner_id) or self.app.partner(partner_id)
                assert isinstance(partner, Partner)
                before = len(partner.pending_events)
                partner.promote_where_reached(version.policy, version.effective_on, program.convert)
                if len(partner.pending_events) > before:
                    changed[partner_id] = partner
        return list(changed.values())


class ProgramCalendar:
    """Time in the program, one clock run at a time, day by day: on each day that matters (a
    policy version takes effect, a term starts, a quarter starts), the policy first, then the
    terms, then the review, deciding on the same partners (each loaded once per run: a run that
    crosses several such days must save one partner, not copies of it)."""

    def __init__(self, app: Register) -> None:
        self.app = app

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        run = _LoadedOnce(self.app)
        jobs = (PolicyTakesEffect(run), TermsStart(run), QuarterlyReview(run))
        changed: dict[UUID, Aggregate] = {}
        for after, upto in by_days_of_note(run, since, until):
            for job in jobs:
                changed.update((aggregate.id, aggregate) for aggregate in job(after, upto))
        return list(changed.values())


def by_days_of_note(
    register: Register, since: datetime | None, until: datetime
) -> list[tuple[datetime | None, datetime]]:
    """A clock run cut at each day that matters, so that each is decided in its turn: a review
    never sees a term that starts after it, a promotion is dated by the day that brings it."""
    if since is None:
        enrolled = [register.partner(i).enrolled_on for i in register.members.ids()]
        first = min(enrolled, default=until.date())
    else:
        first = since.date()
    last = until.date()
    if first >= last:
        return [(since, until)]
    days = {version.effective_on for version in register.program().changes_between(first, last)}
    days.update(day for day, _ in register.members.terms_starting(first, last))
    days.update(quarter_starts(first, last))
    cuts: list[tuple[datetime | None, datetime]] = []
    after = since
    for day in sorted(d for d in days if first < d < last):
        upto = datetime.combine(day, time.min, UTC)
        cuts.append((after, upto))
        after = upto
    cuts.append((after, until))
    return cuts


class _LoadedOnce:
    """A register that hands out the same partner object for the length of one clock run."""

    def __init__(self, register: Register) -> None:
        self.register = register
        self._partners: dict[UUID, Partner] = {}
        self._program: Program | None = None

    @property
    def members(self) -> Members:
        return self.register.members

    def partner(self, partner_id: UUID) -> Partner:
        if partner_id not in self._partners:
            self._partners[partner_id] = self.register.partner(partner_id)
        return self._partners[partner_id]

    def program(self) -> Program:
        if self._program is None:
            self._program = self.register.program()
        return self._program


def quarter_starts(after: date, until: date) -> list[date]:
    """First days of quarters in (after, until]."""
    days: list[date] = []
    year, month = after.year, (after.month - 1) // 3 * 3 + 1
    while True:
        month += 3
        if month > 12:
            year, month = year + 1, month - 12
        day = date(year, month, 1)
        if day > until:
            return days
        days.append(day)
