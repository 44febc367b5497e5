"""The rules of engagement (DOMAIN.md, "Deal registration — rules of engagement"), decided.

``decide`` takes what is known about a submission (its ``Facts``) and answers what the
registration becomes (a ``Decision``): its status, its flags with their explanations, its
protection, whether it takes the customer's claims, and whether it holds only while nobody moves
them. It reads nothing and records nothing: the application gathers the facts (from the log and
the views for one request, in batches for an import) and saves what was decided.

Where each numbered rule is decided:

1. who may register which motion: ``decide`` (``KnownPartner.may_register``); what a
   registration names is the request's schema.
2. first to register wins, 90 days from approval: ``decide``, ``may_approve``; extensions:
   ``Registration.request_extension``.
3. a conflict is recorded, cannot be approved while the protection lasts, and is told when it may
   register again, never who holds the customer: ``decide``, ``may_approve``.
4. auto-approval, else review; every flag explained: ``decide``, ``explained``; the review's
   deadline: ``Registration``.
5. expiry: ``Registration.note_time``, as time passes.
6. incumbent protection at renewal (poaching, not blocked): ``decide``.
7. won, lost or withdrawn release the protection at once: ``CustomerClaims.release``.
8. a direct deal for a protected customer is a channel conflict: ``direct_collision``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.registration.domain.claims import CustomerClaim, CustomerClaims
from services.registration.domain.customers import CustomerIdentity, resemblances
from services.registration.domain.partners import KnownPartner

PROTECTION = timedelta(days=90)
EXTENSION = timedelta(days=30)
MAX_EXTENSIONS = 2
LISTED_DUPLICATES = 5
"""Possible duplicates listed on a registration, the strongest first; the rest are counted."""

APPROVED = "approved"
PENDING_REVIEW = "pending_review"
CONFLICT = "conflict"
RETURNED = "returned"
REJECTED = "rejected"
EXPIRED = "expired"
WON = "won"
LOST = "lost"
WITHDRAWN = "withdrawn"
OPEN = frozenset({APPROVED, PENDING_REVIEW, CONFLICT, RETURNED})
STATUSES = (APPROVED, PENDING_REVIEW, CONFLICT, RETURNED, REJECTED, EXPIRED, WON, LOST, WITHDRAWN)

FIRST_TO_REGISTER = "first-to-register"
POACHING = "poaching"
POSSIBLE_DUPLICATE = "possible-duplicate"
PARTNER_STANDING = "partner-standing"


class RegistrationRuleError(ValueError):
    """A request that breaks a rule of engagement; nothing is recorded."""


class TransitionError(RegistrationRuleError):
    """The registration is not in a state that allows this."""


class AlreadyRegisteredError(RegistrationRuleError):
    def __init__(self, registration_id: UUID | None) -> None:
        super().__init__(
            "this partner already holds the customer for this product line "
            f"(registration {registration_id})"
        )
        self.registration_id = registration_id


class StillProtectedError(TransitionError):
    def __init__(self, until: date | None) -> None:
        super().__init__(
            "another partner's protection of this customer lasts until "
            f"{until.isoformat() if until else 'further notice'}; it cannot be approved before"
        )
        self.until = until


@dataclass(frozen=True)
class Flag:
    """Why a registration is not simply approved: the rule, the keys that matched, how closely,
    and what it collides with. Channel managers see all of it; partners see the rule only."""

    rule: str
    collides_with: str
    """``registration:<id>`` or ``contract:<id>``; empty for a count of others."""
    matched_keys: tuple[str, ...] = ()
    score: Decimal | None = None
    detail: str = ""
    others: int = 0
    """How many more records this rule matched than are listed (a count, not a list)."""

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": self.rule,
            "collides_with": self.collides_with,
            "matched_keys": list(self.matched_keys),
            "score": self.score,
            "detail": self.detail,
        }
        if self.others:
            data["others"] = self.others
        return data


@dataclass(frozen=True)
class Incumbency:
    """An active contract of the customer whose renewal window is open."""

    contract_id: UUID
    partner_id: UUID
    end_date: date


@dataclass(frozen=True)
class Facts:
    """What the rules need to know about a submission, gathered before anything is decided."""

    partner: KnownPartner
    motion: str
    customer: CustomerIdentity
    claims: CustomerClaims
    """The claims on every key the customer is known by, for the product line."""
    similar: Sequence[tuple[UUID, CustomerIdentity]]
    """Open registrations of the product line whose customers look like this one."""
    incumbency: Incumbency | None
    """The customer's contract in its renewal window, if it has one."""
    today: date
    itself: UUID | None = None
    """The registration resubmitted, which is neither its own duplicate nor its own holder."""


@dataclass(frozen=True)
class Decision:
    status: str
    flags: tuple[Flag, ...]
    protected_until: date | None
    may_register_again_on: date | None
    conflict_with: UUID | None
    poaching: Incumbency | None
    """The incumbent to tell, by an event of the registration."""

    @property
    def protects(self) -> bool:
        """It takes every claim of its customer in the transaction that records it."""
        return self.status == APPROVED

    @property
    def rests_on_unclaimed_keys(self) -> bool:
        """Sent to review because no other partner held the customer, without taking its claims:
        it may be recorded only while the claims are as read. Had another partner protected the
        customer meanwhile, this registration lost the race: decided again, it is a conflict
        (rule 3). (A protected registration writes the claims, which guards it the same way.)"""
        return self.status == PENDING_REVIEW


def decide(facts: Facts) -> Decision:
    """Rules 1 to 4 and 6 for one submission."""
    partner, today = facts.partner, facts.today
    refusal = partner.may_register(facts.motion)
    if refusal:
        raise RegistrationRuleError(refusal)
    own = facts.claims.of_partner(partner.partner_id, today)
    if own is not None and own.registration_id != facts.itself:
        raise AlreadyRegisteredError(own.registration_id)
    holder = facts.claims.held_by_other_than(partner.partner_id, today)
    poaching = facts.incumbency
    if poaching is not None and poaching.partner_id == partner.partner_id:
        poaching = None  # renewing one's own customer is no poaching
    flags = explained(
        holder_flag(holder, today) if holder else None,
        poaching_flag(poaching) if poaching else None,
        possible_duplicates(facts.customer, facts.similar, facts.itself),
        None if partner.in_good_standing else standing_flag(),
    )
    if holder is not None:
        again_on = (holder.protected_until or today) + timedelta(days=1)
        return Decision(CONFLICT, flags, None, again_on, holder.registration_id, poaching)
    if any(flag.rule in (POSSIBLE_DUPLICATE, PARTNER_STANDING) for flag in flags):
        return Decision(PENDING_REVIEW, flags, None, None, None, poaching)
    return Decision(APPROVED, flags, today + PROTECTION, None, None, poaching)


def possible_duplicates(
    customer: CustomerIdentity,
    similar: Sequence[tuple[UUID, CustomerIdentity]],
    itself: UUID | None = None,
) -> list[Flag]:
    """Near matches, the strongest first. A registration sharing a key with this one is the same
    customer, not a near match: its claim, if protected, makes this a conflict instead."""
    keys = set(customer.keys)
    others = [
        (registration_id, other)
        for registration_id, other in similar
        if registration_id != itself and not keys.intersection(other.keys)
    ]
    flags = []
    matches = resemblances(customer, [other for _, other in others])
    for (registration_id, _), match in zip(others, matches, strict=True):
        if match is not None:
            flags.append(
                Flag(
                    rule=POSSIBLE_DUPLICATE,
                    collides_with=f"registration:{registration_id}",
                    matched_keys=match.matched,
                    score=match.score,
                )
            )
    flags.sort(key=lambda flag: (-(flag.score or 0), flag.collides_with))
    return flags


def explained(
    holder: Flag | None,
    poaching: Flag | None,
    duplicates: Sequence[Flag],
    standing: Flag | None,
) -> tuple[Flag, ...]:
    """The flags of a registration, strongest rule first, each record named once; of the possible
    duplicates the strongest are listed and the rest counted on the last one listed."""
    flags: list[Flag] = []
    named: set[str] = set()
    for flag in (holder, poaching, *duplicates, standing):
        if flag is None or (flag.collides_with and flag.collides_with in named):
            continue
        named.add(flag.collides_with)
        flags.append(flag)
    listed = [flag for flag in flags if flag.rule == POSSIBLE_DUPLICATE]
    if len(listed) > LISTED_DUPLICATES:
        unlisted = listed[LISTED_DUPLICATES:]
        last = listed[LISTED_DUPLICATES - 1]
        counted = replace(
            last,
            others=len(unlisted),
            detail=f"{len(unlisted)} more open registrations resemble this customer less",
        )
        flags = [counted if flag is last else flag for flag in flags if flag not in unlisted]
    return tuple(flags)


def holder_flag(holder: CustomerClaim, today: date) -> Flag:
    kind = holder.customer_key.split(":", 1)[0]
    until = (holder.protected_until or today).isoformat()
    return Flag(
        rule=FIRST_TO_REGISTER,
        collides_with=f"registration:{holder.registration_id}",
        matched_keys=("customer_key", "product_line"),
        score=Decimal(1),
        detail=f"the customer's {kind} key is protected for this product line until {until}",
    )


def poaching_flag(incumbency: Incumbency) -> Flag:
    return Flag(
        rule=POACHING,
        collides_with=f"contract:{incumbency.contract_id}",
        matched_keys=("customer_key",),
        detail=f"the customer's contract through another partner ends on "
        f"{incumbency.end_date.isoformat()}",
    )


def standing_flag() -> Flag:
    return Flag(rule=PARTNER_STANDING, collides_with="", detail="not in good standing")


def may_approve(claims: CustomerClaims, partner_id: UUID, today: date) -> None:
    """A manager may approve a registration unless another partner protects its customer
    (rule 3): a conflict waits until that protection ends."""
    holder = claims.held_by_other_than(partner_id, today)
    if holder is not None:
        raise StillProtectedError(holder.protected_until)


def direct_collision(claims: CustomerClaims, today: date) -> CustomerClaim | None:
    """The partner's claim a direct deal for the customer collides with (rule 8): recorded as a
    channel conflict, and the partner's protection stands."""
    return claims.protecting(today)
