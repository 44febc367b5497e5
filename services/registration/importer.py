"""Bulk imports: many registrations or contracts, a batch per transaction, each row decided as if
it had been a request of its own, sent in file order.

A batch is gathered at once (``BatchFacts``: the claims and CRM ids in one read of the log, the
views' answers in one statement each), then every row goes through the application's own
``submitted``, so the rules of engagement are the same ones, in the same place
(``domain.engagement``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from services.registration.application import (
    ExternalIdTakenError,
    NewContract,
    NewRegistration,
    RegistrationApplication,
    Submitted,
)
from services.registration.domain.claims import CustomerClaim, CustomerClaims
from services.registration.domain.customers import CustomerIdentity, match_keys
from services.registration.domain.engagement import Incumbency, RegistrationRuleError
from services.registration.domain.external_ids import ExternalId
from services.registration.domain.partners import KnownPartner
from services.registration.domain.registrations import Registration


class BatchIndex(Protocol):
    """The ``CustomerIndex``'s questions for the rows of a batch at once (a bulk import's)."""

    @property
    def budget(self) -> int:
        """How many registrations a candidate lookup reads through its rarest match keys."""
        ...

    @property
    def limit(self) -> int:
        """How many candidates a lookup returns at most."""
        ...

    def similar_customers(
        self, asked: Sequence[tuple[CustomerIdentity, str, frozenset[int]]]
    ) -> Sequence[Sequence[tuple[UUID, CustomerIdentity]]]:
        """``CustomerIndex.similar_customers`` for each (customer, product line, its match
        keys)."""
        ...

    def incumbents(self, customer_keys: Sequence[str], on: date) -> Mapping[str, Incumbency]:
        """``CustomerIndex.incumbent`` for each customer that has one."""
        ...


@dataclass(frozen=True)
class RowOutcome:
    line: int
    status: str
    """``recorded``, ``unchanged`` (its CRM id was already recorded) or ``rejected``."""
    entity_id: UUID | None = None
    registration_status: str | None = None
    problem: RegistrationRuleError | None = None


class ImportedCustomers:
    """The customers an import has recorded so far (open registrations all), by match key: what
    the deals view would hold for them had each row been a request of its own, answered as its
    candidate query would (rarest keys first, up to the probe budget; most probed keys shared
    first, up to the same limit)."""

    def __init__(self, budget: int = 200, limit: int = 50) -> None:
        self.budget = budget
        self.limit = limit
        self.entries: list[tuple[UUID, CustomerIdentity, str, frozenset[int]]] = []
        self.by_key: dict[int, list[int]] = {}

    def add(
        self,
        registration_id: UUID,
        identity: CustomerIdentity,
        product_line: str,
        keys: frozenset[int],
    ) -> None:
        index = len(self.entries)
        self.entries.append((registration_id, identity, product_line, keys))
        for key in keys:
            self.by_key.setdefault(key, []).append(index)

    def mark(self) -> int:
        return len(self.entries)

    def forget_since(self, mark: int) -> None:
        """Forget what was added after ``mark`` (a batch whose save failed)."""
        for _, _, _, keys in self.entries[mark:]:
            for key in keys:
                positions = self.by_key.get(key)
                if positions is None:  # emptied by an entry before this one
                    continue
                while positions and positions[-1] >= mark:
                    positions.pop()
                if not positions:
                    del self.by_key[key]
        del self.entries[mark:]

    def similar_customers(
        self, identity: CustomerIdentity, product_line: str, keys: frozenset[int]
    ) -> list[tuple[UUID, CustomerIdentity]]:
        by_key, entries = self.by_key, self.entries
        counted = sorted((len(positions), key) for key in keys if (positions := by_key.get(key)))
        shared: Counter[int] = Counter()
        before = 0
        for count, key in counted:
            if before >= self.budget:
                break
            shared.update(by_key[key])  # counted in C: how many probed keys each shares
            before += count
        own = identity.key
        # Most probed keys shared first, then by registration id: as plain tuples, sorted
        # without a Python call per comparison.
        ranked = []
        for index, count in shared.items():
            registration_id, other, line, _ = entries[index]
            if line == product_line and other.key != own:
                ranked.append((-count, registration_id.int, index))
        ranked.sort()
        return [entries[index][:2] for _, _, index in ranked[: self.limit]]


class BatchFacts:
    """The facts of an import's rows (``EngagementFacts``), a batch at a time: what the log holds
    (claims, CRM ids) read once a batch, what the views say asked once a batch, partners read
    once an import, and the rows recorded before a row in the file as the views would show
    them had each row been a request."""

    def __init__(self, app: RegistrationApplication, lookups: BatchIndex | None) -> None:
        self.app = app
        self.lookups = lookups
        self.imported = (
            ImportedCustomers(lookups.budget, lookups.limit) if lookups else ImportedCustomers()
        )
        self.partners: dict[tuple[UUID, str], KnownPartner | RegistrationRuleError] = {}
        self.known: dict[UUID, Any] = {}
        self.views: dict[tuple[CustomerIdentity, str], Sequence[tuple[UUID, CustomerIdentity]]]
        self.views = {}
        self.incumbents: dict[str, Incumbency | None] = {}

    def gather(self, batch: Sequence[NewRegistration], today: date) -> None:
        """What the log and the views hold for a batch's rows, read at once."""
        self.known = self.app.get_many(
            [
                ExternalId.create_id("registration", new.external_id)
                for new in batch
                if new.external_id
            ]
            + [
                CustomerClaim.create_id(key, new.product_line)
                for new in batch
                for key in new.customer.identity.keys
            ]
        )
        asked = [
            new
            for new in batch
            if isinstance(self._partner(new.partner_id, new.motion), KnownPartner)
            and self.taken(new.external_id) is None
        ]
        rows = [
            (new.customer.identity, new.product_line, match_keys(new.customer.identity))
            for new in asked
        ]
        if self.lookups is None:
            customers = self.app.customers
            similar = [customers.similar_customers(who, line) for who, line, _ in rows]
            keys = [who.key for who, _, _ in rows]
            incumbents = {key: customers.incumbent(key, today) for key in keys}
        else:
            similar = list(self.lookups.similar_customers(rows))
            found = self.lookups.incumbents([who.key for who, _, _ in rows], today)
            incumbents = {who.key: found.get(who.key) for who, _, _ in rows}
        self.views = {
            (who, line): result for (who, line, _), result in zip(rows, similar, strict=True)
        }
        self.incumbents = incumbents

    def taken(self, external_id: str | None) -> ExternalId | None:
        if external_id is None:
            return None
        taken = self.known.get(ExternalId.create_id("registration", external_id))
        return taken if isinstance(taken, ExternalId) else None

    def _partner(self, partner_id: UUID, motion: str) -> KnownPartner | RegistrationRuleError:
        if (partner_id, motion) not in self.partners:
            try:
                partner = self.app.facts.partner(partner_id, motion)
            except RegistrationRuleError as error:
                self.partners[partner_id, motion] = error
            else:
                refusal = partner.may_register(motion)
                self.partners[partner_id, motion] = (
                    RegistrationRuleError(refusal) if refusal else partner
                )
        return self.partners[partner_id, motion]

    # --- EngagementFacts ---------------------------------------------------------------------
    def partner(self, partner_id: UUID, motion: str) -> KnownPartner:
        partner = self._partner(partner_id, motion)
        if isinstance(partner, RegistrationRuleError):
            raise partner
        return partner

    def claims(self, customer_keys: Sequence[str], product_line: str) -> CustomerClaims:
        return CustomerClaims.found(customer_keys, product_line, self.known.get)

    def similar(
        self, identity: CustomerIdentity, product_line: str
    ) -> Sequence[tuple[UUID, CustomerIdentity]]:
        in_views = self.views.get((identity, product_line), ())
        seen = {registration_id for registration_id, _ in in_views}
        earlier = self.imported.similar_customers(identity, product_line, match_keys(identity))
        return [*in_views, *(found for found in earlier if found[0] not in seen)]

    def incumbent(self, customer_key: str, on: date) -> Incumbency | None:
        return self.incumbents.get(customer_key)

    def recorded(self, submitted: Submitted, identity: CustomerIdentity) -> None:
        """A row recorded: the rows after it see its claims and its customer."""
        registration = submitted.registration
        for claim in submitted.claims.held.values():
            if claim is not None:
                self.known[claim.id] = claim
        self.imported.add(
            registration.id, identity, registration.product_line, match_keys(identity)
        )


class Importer:
    """Records many registrations or contracts, a batch per transaction.

    Every row goes through the same rules as a single request, decided as if the rows had been
    sent one after another: a row sees the claims, the CRM ids and the customers (for possible
    duplicates) of the rows before it in the file, though none of them is in the views yet.
    Rows name their CRM id, so a second run of the same file finds every id taken and records
    nothing. Should a concurrent writer make a batch's save fail, that batch is done again row
    by row.
    """

    BATCH = 500

    def __init__(self, app: RegistrationApplication, lookups: BatchIndex | None = None) -> None:
        self.app = app
        self.facts = BatchFacts(app, lookups)

    def registrations(
        self, rows: Sequence[tuple[int, NewRegistration]], now: datetime
    ) -> list[RowOutcome]:
        outcomes: list[RowOutcome] = []
        imported = self.facts.imported
        for start in range(0, len(rows), self.BATCH):
            batch = rows[start : start + self.BATCH]
            mark = imported.mark()
            try:
                outcomes += self._registration_batch(batch, now)
            except IntegrityError:
                imported.forget_since(mark)
                for line, new in batch:
                    outcome = self._one(line, partial(self.app.register_deal, new, now))
                    outcomes.append(outcome)
                    if outcome.status == "recorded" and outcome.entity_id is not None:
                        identity = new.customer.identity
                        imported.add(
                            outcome.entity_id, identity, new.product_line, match_keys(identity)
                        )
        return outcomes

    def contracts(self, rows: Sequence[tuple[int, NewContract]], now: datetime) -> list[RowOutcome]:
        return [self._one(line, partial(self.app.sign_contract, new, now)) for line, new in rows]

    def _one(self, line: int, record: Callable[[], Aggregate]) -> RowOutcome:
        try:
            recorded = record()
        except ExternalIdTakenError as taken:
            if taken.entity_id is None:
                return RowOutcome(line, "rejected", problem=taken)
            return RowOutcome(line, "unchanged", taken.entity_id)
        except RegistrationRuleError as error:
            return RowOutcome(line, "rejected", problem=error)
        except AggregateNotFoundError:
            return RowOutcome(
                line, "rejected", problem=RegistrationRuleError("no such registration")
            )
        return RowOutcome(line, "recorded", recorded.id, getattr(recorded, "status", None))

    def _registration_batch(
        self, batch: Sequence[tuple[int, NewRegistration]], now: datetime
    ) -> list[RowOutcome]:
        facts = self.facts
        facts.gather([new for _, new in batch], now.date())
        on_line: dict[str, Registration] = {}
        changed: dict[UUID, Aggregate] = {}
        unchanged: dict[UUID, int] = {}
        outcomes = []
        for line, new in batch:
            taken = facts.taken(new.external_id)
            if taken is not None:
                told = self.app.record_told(taken, new.partner_id)
                if told is None:
                    error = ExternalIdTakenError("registration", taken.external_id, None)
                    outcomes.append(RowOutcome(line, "rejected", problem=error))
                else:
                    outcomes.append(RowOutcome(line, "unchanged", told))
                continue
            earlier = on_line.get(new.external_id or "")
            if earlier is not None:  # answered as the same id sent again would be
                if earlier.partner_id == new.partner_id:
                    outcomes.append(RowOutcome(line, "unchanged", earlier.id))
                else:
                    error = ExternalIdTakenError("registration", earlier.external_id or "", None)
                    outcomes.append(RowOutcome(line, "rejected", problem=error))
                continue
            try:
                submitted = self.app.submitted(new, facts, now)
            except RegistrationRuleError as error:
                outcomes.append(RowOutcome(line, "rejected", problem=error))
                continue
            registration = submitted.registration
            facts.recorded(submitted, new.customer.identity)
            if new.external_id:
                on_line[new.external_id] = registration
            for aggregate in submitted.changed:
                changed[aggregate.id] = aggregate
            for claim_id, version in submitted.unchanged.items():
                unchanged.setdefault(claim_id, version)
            outcomes.append(RowOutcome(line, "recorded", registration.id, registration.status))
        # A claim an earlier row read unheld and a later row took is guarded by its write.
        resting = {i: version for i, version in unchanged.items() if i not in changed}
        self.app.save(*changed.values(), unchanged=resting)
        return outcomes
