"""Partners of the program: membership and tier per motion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from services.tiering.domain.metrics import (
    Booking,
    Certification,
    Convert,
    Facts,
    Measured,
    measure,
)
from services.tiering.domain.standing import TierAssessment, assess, rank
from shared.contracts import publishes
from shared.money import Money
from shared.policy import ProgramPolicy

ADDENDUM_MOTIONS = ("sell", "manage", "service", "build")
"""Motions that need an addendum to the main agreement; every partner may also `refer`."""

CATEGORIES_BY_FUNCTION: dict[str, frozenset[str]] = {
    "solution": frozenset(
        {"isv_ihv", "platform", "system_integrator", "oem", "interoperability", "msp_cmsp"}
    ),
    "sales": frozenset(
        {"solution_reseller", "value_added_distributor", "cloud_reseller", "sales_agent"}
    ),
    "service": frozenset(
        {
            "authorized_service",
            "business_services",
            "3pl",
            "financing",
            "professional_services",
            "training_certification",
            "epc",
            "consulting_deployment",
        }
    ),
    "influencer": frozenset(
        {
            "government",
            "standards_body",
            "developer_community",
            "open_source_community",
            "academia",
            "industry_analyst",
        }
    ),
}

MANAGEMENT_STRUCTURES = frozenset(
    {"formal_program", "formal_support", "one_on_one", "sla", "marketing_pr"}
)

TRAINING_TRACKS = ("sales", "services")
TRAINING_LEVELS = (101, 201, 301)

ENTRY_TIER = {
    "sell": "registered",
    "manage": "registered",
    "service": "registered",
    "build": "registered",
    "refer": "associate",
}


def renewal_booking_id(contract_id: UUID, start_date: date) -> UUID:
    """A renewal's booking of the contract's new term (its signature books under the contract's
    own id)."""
    return uuid5(NAMESPACE_URL, f"{contract_id}/renewal/{start_date}")


class MembershipConflictError(ValueError):
    """What was asked conflicts with the partner's record as it stands (a 409, not a 422)."""


class MembershipError(ValueError):
    """A membership request that breaks the program's rules."""


@publishes(
    Enrolled=published.PartnerEnrolled,
    MembershipChanged=published.PartnerMembershipChanged,
    TierChanged=published.TierChanged,
)
class Partner(Aggregate):
    class Enrolled(Aggregate.Created):
        legal_name: str
        home_country: str
        regions: list[str]
        motions: list[str]
        function: str
        category: str
        management: str

    class MembershipChanged(Aggregate.Event):
        change: str
        motion: str | None
        motions: list[str]
        offboarded: bool
        effective_on: date
        reason: str

    class TierChanged(Aggregate.Event):
        motion: str
        previous_tier: str | None
        tier: str
        effective_on: date
        reason: str
        metrics: dict[str, Decimal]
        registration_position: int | None

    @event(Enrolled)
    def __init__(
        self,
        legal_name: str,
        home_country: str,
        regions: list[str],
        motions: list[str],
        function: str,
        category: str,
        management: str,
    ) -> None:
        self.legal_name = legal_name
        self.home_country = home_country
        self.motions = motions
        self.function = function
        self.category = category
        self.management = management
        self.tiers: dict[str, str] = {}
        self.facts = Facts(regions=list(regions))
        self.quarters_below: dict[str, int] = {}
        self.entered_on: date | None = None
        self.last_review: date | None = None
        self.offboarded_on: date | None = None
        self.registration_position = 0
        """How far into registration's log the facts this partner has taken in go: a tier
        decided now comes after those facts and before any later one (commissions orders
        tiers and contracts by it)."""

    @classmethod
    def enrol(
        cls,
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
        """Sign the main agreement (and the addenda named), entering each motion's first tier."""
        if function not in CATEGORIES_BY_FUNCTION:
            raise MembershipError(
                f"unknown function {function!r}; one of {sorted(CATEGORIES_BY_FUNCTION)}"
            )
        if category not in CATEGORIES_BY_FUNCTION[function]:
            raise MembershipError(
                f"category {category!r} is not of function {function!r}; one of "
                f"{sorted(CATEGORIES_BY_FUNCTION[function])}"
            )
        if management not in MANAGEMENT_STRUCTURES:
            raise MembershipError(
                f"unknown management structure {management!r}; one of "
                f"{sorted(MANAGEMENT_STRUCTURES)}"
            )
        unknown = sorted(set(motions) - set(ADDENDUM_MOTIONS))
        if unknown:
            raise MembershipError(
                f"no addendum exists for {unknown}; addenda are {list(ADDENDUM_MOTIONS)} "
                "(every partner may refer without one)"
            )
        ordered_motions = [m for m in ADDENDUM_MOTIONS if m in motions]
        partner = cls(
            legal_name=legal_name,
            home_country=home_country,
            regions=sorted(set(regions)),
            motions=ordered_motions,
            function=function,
            category=category,
            management=management,
        )
        for motion in ["refer", *ordered_motions]:
            partner.tier_changed(
                motion=motion,
                previous_tier=None,
                tier=ENTRY_TIER[motion],
                effective_on=on,
                reason="enrolled",
                metrics={},
                registration_position=partner.registration_position,
            )
        return partner

    @event(TierChanged)
    def tier_changed(
        self,
        motion: str,
        previous_tier: str | None,
        tier: str,
        effective_on: date,
        reason: str,
        metrics: dict[str, Decimal],
        registration_position: int | None = None,
    ) -> None:
        self.tiers[motion] = tier
        if self.entered_on is None:
            self.entered_on = effective_on
        if previous_tier is not None and tier != previous_tier:
            self.quarters_below.pop(motion, None)

    # --- membership -----------------------------------------------------------------------
    def sign_addendum(self, *, motion: str, on: date, entry_tier: str) -> None:
        self._require_member()
        if motion not in ADDENDUM_MOTIONS:
            raise MembershipError(
                f"no addendum exists for {motion!r}; addenda are {list(ADDENDUM_MOTIONS)}"
            )
        if motion in self.motions:
            raise MembershipConflictError(f"the partner already holds the {motion} addendum")
        motions = [m for m in ADDENDUM_MOTIONS if m in {*self.motions, motion}]
        self._membership_changed("addendum_signed", motion, motions, on, "")
        self.tier_changed(
            motion=motion,
            previous_tier=None,
            tier=entry_tier,
            effective_on=on,
            reason="addendum signed",
            metrics={},
            registration_position=self.registration_position,
        )

    def terminate_addendum(self, *, motion: str, on: date, reason: str) -> None:
        """The motion ends; its last tier stays in the history, and no longer moves."""
        self._require_member()
        if motion not in self.motions:
            raise MembershipConflictError(
                f"the partner holds no {motion} addendum (it holds {self.motions})"
            )
        motions = [m for m in self.motions if m != motion]
        self._membership_changed("addendum_terminated", motion, motions, on, reason)

    def operate_in(self, *, regions: list[str], on: date, recorded_by: str) -> None:
        """The regions the partner operates in from now on (premier and alliance need two)."""
        self._require_member()
        wanted = sorted({region.strip() for region in regions if region.strip()})
        if not wanted:
            raise MembershipError("a partner operates in at least one region")
        if wanted == self.regions:
            raise MembershipConflictError(f"the partner already operates in {wanted}")
        self.regions_changed(regions=wanted, effective_on=on, recorded_by=recorded_by)

    @event("RegionsChanged")
    def regions_changed(self, regions: list[str], effective_on: date, recorded_by: str) -> None:
        self.facts.regions = list(regions)

    @property
    def regions(self) -> list[str]:
        """The regions the partner operates in (a fact its `sell` tiers are measured by)."""
        return self.facts.regions

    def offboard(self, *, on: date, reason: str) -> None:
        self._require_member()
        self._membership_changed("offboarded", None, self.motions, on, reason)

    def _require_member(self) -> None:
        if self.offboarded_on is not None:
            raise MembershipConflictError(f"the partner was offboarded on {self.offboarded_on}")

    def _membership_changed(
        self, change: str, motion: str | None, motions: list[str], on: date, reason: str
    ) -> None:
        self.membership_changed(
            change=change,
            motion=motion,
            motions=motions,
            offboarded=change == "offboarded",
            effective_on=on,
            reason=reason,
        )

    @event(MembershipChanged)
    def membership_changed(
        self,
        change: str,
        motion: str | None,
        motions: list[str],
        offboarded: bool,
        effective_on: date,
        reason: str,
    ) -> None:
        self.motions = motions
        if change == "addendum_terminated" and motion is not None:
            self.tiers.pop(motion, None)
            self.quarters_below.pop(motion, None)
        if offboarded:
            self.offboarded_on = effective_on

    @property
    def enrolled_on(self) -> date:
        """The day the partner entered the program (its first tiers)."""
        assert self.entered_on is not None
        return self.entered_on

    def reviewed(self, review_on: date) -> bool:
        return self.last_review is not None and self.last_review >= review_on

    # --- what the partner sells and achieves -------------------------------------------
    @event("ContractBooked")
    def contract_booked(
        self,
        booking_id: UUID,
        contract_id: UUID,
        motion: str,
        booked_on: date,
        first_year_value: Money,
        registration_position: int | None = None,
        ends_on: date | None = None,
    ) -> None:
        self.facts.bookings[booking_id] = Booking(
            booking_id, contract_id, motion, booked_on, first_year_value, ends_on
        )
        self._taken_in(registration_position)

    def _taken_in(self, registration_position: int | None) -> None:
        if registration_position is not None:
            self.registration_position = max(self.registration_position, registration_position)

    def book(
        self,
        *,
        contract_id: UUID,
        motion: str,
        booked_on: date,
        first_year_value: Money,
        registration_position: int | None = None,
        ends_on: date | None = None,
        booking_id: UUID | None = None,
    ) -> bool:
        """A term of a contract through the partner (a referral won, for `refer`), or one of
        its renewals (its own booking id); each once. It counts from ``booked_on``, the term's
        start, whenever it was reported."""
        booking_id = booking_id or contract_id
        if booking_id in self.facts.bookings:
            return False
        self.contract_booked(
            booking_id=booking_id,
            contract_id=contract_id,
            motion=motion,
            booked_on=booked_on,
            first_year_value=first_year_value,
            registration_position=registration_position,
            ends_on=ends_on,
        )
        return True

    def booking_of(self, contract_id: UUID) -> Booking | None:
        """The contract's first booking (its signature), if the partner booked it."""
        return self.facts.bookings.get(contract_id)

    @event("BookingCancelled")
    def booking_cancelled(
        self, booking_id: UUID, on: date, registration_position: int | None = None
    ) -> None:
        self.facts.cancelled[booking_id] = on
        self._taken_in(registration_position)

    def cancel_booking(
        self, *, contract_id: UUID, on: date, registration_position: int | None = None
    ) -> bool:
        """A cancelled contract never counts from the day its cancellation takes effect: every
        term of it still booked, the one in force and any renewal that had not started yet."""
        terms = [
            b
            for b in self.facts.bookings.values()
            if b.contract_id == contract_id and b.booking_id not in self.facts.cancelled
        ]
        for term in sorted(terms, key=lambda b: b.booked_on):
            self.booking_cancelled(
                booking_id=term.booking_id, on=on, registration_position=registration_position
            )
        return bool(terms)

    @event("RegistrationApprovalCounted")
    def registration_approval_counted(
        self,
        registration_id: UUID,
        motion: str,
        approved_on: date,
        registration_position: int | None = None,
    ) -> None:
        self.facts.approvals[registration_id] = (motion, approved_on)
        self._taken_in(registration_position)

    def count_approval(
        self,
        *,
        registration_id: UUID,
        motion: str,
        approved_on: date,
        registration_position: int | None = None,
    ) -> bool:
        """An approved registration, by a channel manager or by the rules (approved is
        approved), counted once."""
        if registration_id in self.facts.approvals:
            return False
        self.registration_approval_counted(
            registration_id=registration_id,
            motion=motion,
            approved_on=approved_on,
            registration_position=registration_position,
        )
        return True

    @event("TrainingCompleted")
    def training_completed(self, track: str, level: int, on: date, recorded_by: str) -> None:
        self.facts.training[track] = max(level, self.facts.training.get(track, 0))

    def complete_training(self, *, track: str, level: int, on: date, recorded_by: str) -> None:
        if track not in TRAINING_TRACKS:
            raise MembershipError(f"unknown training track {track!r}; one of {TRAINING_TRACKS}")
        if level not in TRAINING_LEVELS:
            raise MembershipError(f"unknown training level {level}; one of {TRAINING_LEVELS}")
        self.training_completed(track=track, level=level, on=on, recorded_by=recorded_by)

    @event("IndividualCertified")
    def individual_certified(
        self,
        individual: str,
        certification: str,
        track: str,
        certified_on: date,
        expires_on: date | None,
        recorded_by: str,
    ) -> None:
        self.facts.certifications[(individual, certification)] = Certification(
            individual, certification, track, certified_on, expires_on
        )

    def certify(
        self,
        *,
        individual: str,
        certification: str,
        track: str,
        certified_on: date,
        expires_on: date | None,
        recorded_by: str,
    ) -> None:
        if track not in TRAINING_TRACKS:
            raise MembershipError(f"unknown track {track!r}; one of {TRAINING_TRACKS}")
        if expires_on is not None and expires_on < certified_on:
            raise MembershipError("a certification cannot expire before it is obtained")
        self.individual_certified(
            individual=individual,
            certification=certification,
            track=track,
            certified_on=certified_on,
            expires_on=expires_on,
            recorded_by=recorded_by,
        )

    @event("ProjectCompleted")
    def project_completed(self, project: str, completed_on: date, recorded_by: str) -> None:
        self.facts.projects[project] = completed_on

    def complete_project(self, *, project: str, completed_on: date, recorded_by: str) -> None:
        if project in self.facts.projects:
            raise MembershipConflictError(f"project {project!r} is already recorded as completed")
        self.project_completed(project=project, completed_on=completed_on, recorded_by=recorded_by)

    @event("IntegrationCertified")
    def integration_certified(self, integration: str, on: date, recorded_by: str) -> None:
        self.facts.integrations[integration] = on

    def certify_integration(self, *, integration: str, on: date, recorded_by: str) -> None:
        if integration in self.facts.integrations:
            raise MembershipConflictError(f"integration {integration!r} is already certified")
        self.integration_certified(integration=integration, on=on, recorded_by=recorded_by)

    @event("JointCustomerRecorded")
    def joint_customer_recorded(self, customer: str, since: date, recorded_by: str) -> None:
        self.facts.joint_customers[customer] = since

    def record_joint_customer(self, *, customer: str, since: date, recorded_by: str) -> None:
        if customer in self.facts.joint_customers:
            raise MembershipConflictError(f"{customer!r} is already a joint customer")
        self.joint_customer_recorded(customer=customer, since=since, recorded_by=recorded_by)

    @event("ManagedRevenueReported")
    def managed_revenue_reported(self, month: date, mrr: Money, recorded_by: str) -> None:
        self.facts.managed_mrr[month] = mrr

    def report_managed_revenue(self, *, month: date, mrr: Money, recorded_by: str) -> None:
        """The recurring revenue under management in a month (a later report replaces it)."""
        self.managed_revenue_reported(month=month.replace(day=1), mrr=mrr, recorded_by=recorded_by)

    # --- tiers ----------------------------------------------------------------------------
    def standing(self, policy: ProgramPolicy, today: date, convert: Convert) -> list[Standing]:
        """Each motion's tier and metrics, and what its next tier still needs."""
        result = []
        for motion in self.tiers:
            measured = measure(self.facts, motion, today, policy.tiers.window_days, convert)  # type: ignore[arg-type]
            assessment = assess(policy, motion, measured.metrics)  # type: ignore[arg-type]
            result.append(Standing(self.tiers[motion], measured, assessment))
        return result

    def promote_where_reached(self, policy: ProgramPolicy, today: date, convert: Convert) -> None:
        """Promotion takes effect the moment a threshold is crossed (while a member)."""
        if self.offboarded_on is not None:
            return
        for standing in self.standing(policy, today, convert):
            motion = standing.assessment.motion
            if rank(policy, motion, standing.assessment.tier) > rank(policy, motion, standing.tier):
                self._move_to_reached(standing, today, "promotion")

    def review(
        self,
        policy: ProgramPolicy,
        review_on: date,
        convert: Convert,
        *,
        last_registered: date | None = None,
    ) -> None:
        """The quarterly review: a motion below its tier for longer than the grace is demoted;
        a partner with neither registrations nor revenue in the window is flagged inactive."""
        if self.offboarded_on is not None:
            return
        grace = policy.tiers.demotion_grace_quarters
        for standing in self.standing(policy, review_on, convert):
            motion = standing.assessment.motion
            reached = rank(policy, motion, standing.assessment.tier)
            held = rank(policy, motion, standing.tier)
            if reached < held and self.quarters_below.get(motion, 0) + 1 > grace:
                self._move_to_reached(standing, review_on, "demotion")
            elif reached < held:
                self.fell_below(
                    motion=motion,
                    review_on=review_on,
                    quarters=self.quarters_below.get(motion, 0) + 1,
                    metrics=standing.measured.metrics,
                )
            elif motion in self.quarters_below:
                self.back_above(motion=motion, review_on=review_on)
        self.promote_where_reached(policy, review_on, convert)
        last = max(
            (d for d in (self.facts.last_activity(), last_registered) if d is not None),
            default=None,
        )
        member_for_a_window = self.enrolled_on + timedelta(days=policy.tiers.window_days)
        window_opened = review_on - timedelta(days=policy.tiers.window_days)
        idle = last is None or last < window_opened
        if idle and member_for_a_window <= review_on:
            self.flagged_inactive(review_on=review_on, last_activity=last)
        self.quarter_reviewed(review_on=review_on)

    def _move_to_reached(self, standing: Standing, on: date, reason: str) -> None:
        self.tier_changed(
            motion=standing.assessment.motion,
            previous_tier=standing.tier,
            tier=standing.assessment.tier,
            effective_on=on,
            reason=reason,
            metrics=standing.measured.metrics,
            registration_position=self.registration_position,
        )

    @event("QuarterReviewed")
    def quarter_reviewed(self, review_on: date) -> None:
        self.last_review = review_on

    @event("FellBelowThreshold")
    def fell_below(
        self, motion: str, review_on: date, quarters: int, metrics: dict[str, Decimal]
    ) -> None:
        self.quarters_below[motion] = quarters

    @event("BackAboveThreshold")
    def back_above(self, motion: str, review_on: date) -> None:
        self.quarters_below.pop(motion, None)

    @event("FlaggedInactive")
    def flagged_inactive(self, review_on: date, last_activity: date | None) -> None:
        pass


@dataclass(frozen=True)
class Standing:
    tier: str
    """The tier held."""
    measured: Measured
    assessment: TierAssessment
    """The tier the metrics reach now, and what the next one needs."""
