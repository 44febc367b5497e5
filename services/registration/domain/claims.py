"""Who holds a customer: one claim per customer key and product line.

A claim's id derives from its key, so the claims are the customer's lock in the log: of two
registrations racing to protect one customer, exactly one can record the claim's next version;
the other is decided again and finds it taken (rules 2 and 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

_CLAIM_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dealreg:customer-claim")


class CustomerClaim(Aggregate):
    """Who holds a customer key for a product line. Its id derives from the key, so of two
    racing registrations exactly one creates (or moves) it; the other retries and finds it."""

    @staticmethod
    def create_id(customer_key: str, product_line: str, **_: object) -> UUID:
        return uuid5(_CLAIM_NAMESPACE, f"{customer_key}|{product_line.casefold()}")

    @event("Claimed")
    def __init__(
        self,
        customer_key: str,
        product_line: str,
        registration_id: UUID,
        partner_id: UUID,
        protected_until: date,
    ) -> None:
        self.customer_key = customer_key
        self.product_line = product_line
        self.registration_id: UUID | None = registration_id
        self.partner_id: UUID | None = partner_id
        self.protected_until: date | None = protected_until

    def protects_on(self, day: date) -> bool:
        return self.protected_until is not None and day <= self.protected_until

    def held_by_other_than(self, partner_id: UUID, day: date) -> bool:
        return self.protects_on(day) and self.partner_id != partner_id

    def take(self, *, registration_id: UUID, partner_id: UUID, protected_until: date) -> None:
        self.reclaimed(
            registration_id=registration_id, partner_id=partner_id, protected_until=protected_until
        )

    @event("Reclaimed")
    def reclaimed(self, registration_id: UUID, partner_id: UUID, protected_until: date) -> None:
        self.registration_id = registration_id
        self.partner_id = partner_id
        self.protected_until = protected_until

    def extend(self, *, registration_id: UUID, protected_until: date) -> None:
        if self.registration_id == registration_id:
            self.extended(protected_until=protected_until)

    @event("Extended")
    def extended(self, protected_until: date) -> None:
        self.protected_until = protected_until

    def release(self, *, registration_id: UUID, reason: str) -> bool:
        """Let go at once (won, lost, withdrawn, expired); only the holding registration can."""
        if self.registration_id != registration_id or self.protected_until is None:
            return False
        self.released(registration_id=registration_id, reason=reason)
        return True

    @event("Released")
    def released(self, registration_id: UUID, reason: str) -> None:
        self.registration_id = None
        self.partner_id = None
        self.protected_until = None


@dataclass
class CustomerClaims:
    """The claims on every key a customer is known by, for one product line. A registration
    protected holds them all, taken in the transaction that records it: two registrations that
    share any key cannot both be protected (the second to save finds the claim moved)."""

    customer_keys: tuple[str, ...]
    product_line: str
    held: dict[str, CustomerClaim | None]

    @classmethod
    def found(
        cls,
        customer_keys: Sequence[str],
        product_line: str,
        claim: Callable[[UUID], CustomerClaim | None],
    ) -> CustomerClaims:
        """The claims on the keys, each as ``claim`` finds it by its id (the log, a batch)."""
        held = {key: claim(CustomerClaim.create_id(key, product_line)) for key in customer_keys}
        return cls(tuple(customer_keys), product_line, held)

    def of_partner(self, partner_id: UUID, day: date) -> CustomerClaim | None:
        """A claim the partner itself holds on one of the keys: it registered this already."""
        return next(
            (
                claim
                for claim in self.held.values()
                if claim is not None and claim.protects_on(day) and claim.partner_id == partner_id
            ),
            None,
        )

    def held_by_other_than(self, partner_id: UUID, day: date) -> CustomerClaim | None:
        return next(
            (
                claim
                for claim in self.held.values()
                if claim is not None and claim.held_by_other_than(partner_id, day)
            ),
            None,
        )

    def protecting(self, day: date) -> CustomerClaim | None:
        return next((c for c in self.held.values() if c is not None and c.protects_on(day)), None)

    def protect(
        self, registration_id: UUID, partner_id: UUID, protected_until: date
    ) -> list[CustomerClaim]:
        """Every key, held by the registration until its protection ends."""
        taken = []
        for key in self.customer_keys:
            claim = self.held.get(key)
            if claim is None:
                claim = CustomerClaim(
                    customer_key=key,
                    product_line=self.product_line,
                    registration_id=registration_id,
                    partner_id=partner_id,
                    protected_until=protected_until,
                )
                self.held[key] = claim
            else:
                claim.take(
                    registration_id=registration_id,
                    partner_id=partner_id,
                    protected_until=protected_until,
                )
            taken.append(claim)
        return taken

    def as_read(self) -> dict[UUID, int]:
        """Each claim's version as read (0: none yet), for a save that holds only while no
        other writer has moved them."""
        return {
            CustomerClaim.create_id(key, self.product_line): claim.version if claim else 0
            for key, claim in self.held.items()
        }

    def extend(self, registration_id: UUID, protected_until: date) -> list[CustomerClaim]:
        extended = []
        for claim in self.held.values():
            if claim is not None and claim.registration_id == registration_id:
                claim.extend(registration_id=registration_id, protected_until=protected_until)
                extended.append(claim)
        return extended

    def release(self, registration_id: UUID, reason: str) -> list[CustomerClaim]:
        return [
            claim
            for claim in self.held.values()
            if claim is not None and claim.release(registration_id=registration_id, reason=reason)
        ]


# Recorded under its first module's name before the rules of engagement had a module of their own.
register_topic("services.registration.domain.registrations:CustomerClaim", CustomerClaim)
