"""The published language: the events that cross a service boundary.

Each event has a stable name (the topic it is stored under in its producer's log), a version and
a schema (its pydantic model). A producer marks the aggregate event that carries a contract with
``@publishes(...)``; a consumer reads the producer's log through ``PublishedLanguage.decode``
and never sees the producer's own classes. Older versions are upcast on the way in; names a
consumer does not know are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import register_topic
from pydantic import BaseModel, ConfigDict

from shared.audit.causes import AUDIT_KEY
from shared.codec import build_transcoder
from shared.money import Money

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class PublishedEvent(BaseModel):
    """Envelope fields every published event carries, then its own payload fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_name: ClassVar[str]
    event_version: ClassVar[int] = 1
    subject_field: ClassVar[str]
    """The payload field that holds the id of the aggregate whose log stream carries the event."""
    upcasters: ClassVar[dict[int, Upcaster]] = {}
    """``{n: f}``: f turns the state of version n into that of version n + 1."""
    withheld: ClassVar[frozenset[str]] = frozenset()
    """Payload fields a partner must not see in a webhook (another partner's id)."""

    log: str
    position: int
    stream_version: int
    occurred_at: datetime
    correlation_id: str | None = None
    """The correlation id of the request (or clock run) that set this event in motion."""


class PartnerEnrolled(PublishedEvent):
    event_name = "PartnerEnrolled"
    subject_field = "partner_id"

    partner_id: UUID
    legal_name: str
    home_country: str
    regions: list[str]
    motions: list[str]
    function: str
    category: str


class PartnerMembershipChanged(PublishedEvent):
    """An addendum signed or terminated, or the partner offboarded: the membership after it."""

    event_name = "PartnerMembershipChanged"
    subject_field = "partner_id"

    partner_id: UUID
    change: str
    """``addendum_signed``, ``addendum_terminated`` or ``offboarded``."""
    motion: str | None
    motions: list[str]
    offboarded: bool
    effective_on: date
    reason: str


def _decided_in_no_known_order(state: dict[str, Any]) -> dict[str, Any]:
    """v1 → v2 of ``TierChanged``: which registration events came before is not known."""
    state.setdefault("registration_position", None)
    return state


class TierChanged(PublishedEvent):
    """v2: ``registration_position``, how far tiering had read registration's log when it
    decided (None in v1 events): the order of tiers and contracts, whatever the clocks say."""

    event_name = "TierChanged"
    event_version = 2
    subject_field = "partner_id"
    upcasters = {1: _decided_in_no_known_order}

    partner_id: UUID
    motion: str
    previous_tier: str | None
    tier: str
    effective_on: date
    reason: str
    metrics: dict[str, Decimal]
    registration_position: int | None


class PolicyAdopted(PublishedEvent):
    """A version of the program's policy document (tiers and commissions), in force from a day
    on; ``document`` is valid against ``shared.policy.ProgramPolicy``."""

    event_name = "PolicyAdopted"
    subject_field = "program_id"

    program_id: UUID
    version: int
    effective_on: date
    document: dict[str, Any]
    adopted_by: str
    note: str


class StatementIssued(PublishedEvent):
    """A partner's monthly statement, closed: amounts per currency, never to change again."""

    event_name = "StatementIssued"
    subject_field = "statement_id"

    statement_id: UUID
    partner_id: UUID
    period: str
    lines: int
    carried_in: dict[str, Decimal]
    totals: dict[str, Decimal]
    payable: dict[str, Decimal]
    carried_out: dict[str, Decimal]


class WebhookEndpointChanged(PublishedEvent):
    """A webhook subscription as it now stands (created, changed, rotated, disabled, enabled,
    deleted). ``secrets`` are sealed (``{"sealed": …, "until": instant or null}``)."""

    event_name = "WebhookEndpointChanged"
    subject_field = "endpoint_id"

    endpoint_id: UUID
    change: str
    url: str
    event_types: list[str]
    partner_id: UUID | None
    enabled: bool
    secrets: list[dict[str, Any]]
    description: str
    changed_by: str


class WebhookEndpointSuspended(PublishedEvent):
    """A service stopped delivering to an endpoint: it answered 410 Gone, or kept failing."""

    event_name = "WebhookEndpointSuspended"
    subject_field = "suspension_id"

    suspension_id: UUID
    endpoint_id: UUID
    service: str
    reason: str
    failing_since: datetime | None


class DealRegistered(PublishedEvent):
    event_name = "DealRegistered"
    subject_field = "registration_id"

    registration_id: UUID
    partner_id: UUID
    customer_key: str
    customer_name: str
    country: str
    product_line: str
    motion: str
    estimated_value: Money
    expected_close: date
    external_id: str | None
    status: str
    submitted_at: datetime
    """The program's present when it was submitted (auto-approved: approved on its day)."""


class RegistrationApproved(PublishedEvent):
    """A registration approved after submission: by a channel manager after review, or by the
    rules when it is resubmitted (``by`` is ``auto``). Approved at once on submission, it is a
    ``DealRegistered`` with status ``approved``."""

    event_name = "RegistrationApproved"
    subject_field = "registration_id"

    registration_id: UUID
    partner_id: UUID
    customer_key: str
    product_line: str
    motion: str
    by: str
    approved_on: date
    protected_until: date


def _reported_when_recorded(state: dict[str, Any]) -> dict[str, Any]:
    """v1 → v2: a report of v1 is dated by the instant it was recorded, as it was then."""
    state.setdefault("reported_at", state["timestamp"])
    return state


class ContractSigned(PublishedEvent):
    """Closed-won. ``motion`` is that of the registration it wins (``refer``: the partner is the
    referrer); ``poached`` marks a contract won from another partner's renewal window.
    v2: ``reported_at``, the program's present when the CRM reported it."""

    event_name = "ContractSigned"
    event_version = 2
    subject_field = "contract_id"
    upcasters = {1: _reported_when_recorded}

    contract_id: UUID
    customer_key: str
    partner_id: UUID | None
    registration_id: UUID | None
    start_date: date
    term_months: int
    end_date: date
    mrr: Money
    one_time: Money | None
    external_id: str | None
    reported_at: datetime
    motion: str | None = None
    poached: bool = False
    incumbent_partner_id: UUID | None = None

    withheld = frozenset({"incumbent_partner_id"})

    @property
    def first_year_value(self) -> Money:
        """The base of sell tiers, the new-business bonus and the referral fee."""
        return first_year_value(self.mrr, self.term_months, self.one_time)

    @property
    def reported_on(self) -> date:
        return self.reported_at.date()

    @property
    def won_on(self) -> date:
        """The day its one-time fees are earned: its signature, or its start if reported late."""
        return min(self.start_date, self.reported_on)

    @property
    def known_on(self) -> date:
        """The first day a tier may move for it: reported, and started (never back-dated)."""
        return max(self.start_date, self.reported_on)


def first_year_value(mrr: Money, term_months: int, one_time: Money | None) -> Money:
    """What a term books: its first twelve months of recurring revenue, plus one-time fees."""
    value = mrr.amount * min(term_months, 12)
    if one_time is not None and one_time.currency == mrr.currency:
        value += one_time.amount
    return Money(value, mrr.currency)


class ContractRenewed(PublishedEvent):
    """v2: ``reported_at``, the program's present when the CRM reported it."""

    event_name = "ContractRenewed"
    event_version = 2
    subject_field = "contract_id"
    upcasters = {1: _reported_when_recorded}

    contract_id: UUID
    customer_key: str
    partner_id: UUID | None
    term_months: int
    start_date: date
    end_date: date
    mrr: Money
    external_id: str | None
    reported_at: datetime

    @property
    def first_year_value(self) -> Money:
        return first_year_value(self.mrr, self.term_months, None)

    @property
    def known_on(self) -> date:
        """The first day a tier may move for the new term: reported, and started."""
        return max(self.start_date, self.reported_at.date())


class ContractCancelled(PublishedEvent):
    """v2: ``reported_at``, the program's present when the CRM reported it."""

    event_name = "ContractCancelled"
    event_version = 2
    subject_field = "contract_id"
    upcasters = {1: _reported_when_recorded}

    contract_id: UUID
    customer_key: str
    partner_id: UUID | None
    start_date: date
    effective_on: date
    reason: str
    reported_at: datetime


class RenewalDue(PublishedEvent):
    event_name = "RenewalDue"
    subject_field = "contract_id"

    contract_id: UUID
    customer_key: str
    partner_id: UUID | None
    end_date: date
    due_on: date


class LogCheckpointed(PublishedEvent):
    """The head of a log's hash chain, published so that copies of it are kept elsewhere: a
    log rewritten together with its chain disagrees with them (``dealreg audit verify``)."""

    event_name = "LogCheckpointed"
    subject_field = "chain_id"

    chain_id: UUID
    through_position: int
    chain_hash: str


ALL_CONTRACTS: tuple[type[PublishedEvent], ...] = (
    PartnerEnrolled,
    PartnerMembershipChanged,
    TierChanged,
    PolicyAdopted,
    StatementIssued,
    DealRegistered,
    RegistrationApproved,
    ContractSigned,
    ContractRenewed,
    ContractCancelled,
    RenewalDue,
    WebhookEndpointChanged,
    WebhookEndpointSuspended,
    LogCheckpointed,
)

DELIVERED_BY: dict[str, tuple[type[PublishedEvent], ...]] = {
    "registration": (
        DealRegistered,
        RegistrationApproved,
        ContractSigned,
        ContractRenewed,
        ContractCancelled,
        RenewalDue,
        LogCheckpointed,
    ),
    "tiering": (
        PartnerEnrolled,
        PartnerMembershipChanged,
        TierChanged,
        PolicyAdopted,
        LogCheckpointed,
    ),
    "commissions": (StatementIssued, LogCheckpointed),
}
"""The published events each service delivers by webhook (endpoint changes never are: they
carry sealed secrets)."""

WEBHOOK_EVENT_TYPES = frozenset(e.event_name for events in DELIVERED_BY.values() for e in events)

TAggregate = TypeVar("TAggregate", bound=type)


def publishes(**events: type[PublishedEvent]) -> Callable[[TAggregate], TAggregate]:
    """Aggregate class decorator: store the named nested events under their contracts' names.

    ``@publishes(Enrolled=PartnerEnrolled)`` stores ``Partner.Enrolled`` under the stable topic
    ``PartnerEnrolled`` with the contract's version, whatever the module is called.
    """

    def mark(aggregate_class: TAggregate) -> TAggregate:
        for attribute, contract in events.items():
            event_class = getattr(aggregate_class, attribute)
            event_class.TOPIC = contract.event_name
            event_class.class_version = contract.event_version
            for version, upcaster in contract.upcasters.items():
                setattr(event_class, f"upcast_v{version}_v{version + 1}", staticmethod(upcaster))
            register_topic(contract.event_name, event_class)
        return aggregate_class

    return mark


class UnknownEventVersionError(Exception):
    """The producer writes a newer version than this consumer understands: upgrade it."""


class PublishedLanguage:
    """Decodes the published events of one upstream log that a consumer cares about."""

    def __init__(self, log: str, contracts: Iterable[type[PublishedEvent]]) -> None:
        self.log = log
        self._contracts = {contract.event_name: contract for contract in contracts}
        self._transcoder = build_transcoder()

    @property
    def topics(self) -> list[str]:
        return sorted(self._contracts)

    def decode(self, notification: Notification) -> PublishedEvent | None:
        contract = self._contracts.get(notification.topic)
        if contract is None:
            return None
        state: dict[str, Any] = self._transcoder.decode(notification.state)
        cause = state.pop(AUDIT_KEY, None) or {}
        version = int(state.pop("class_version", 1))
        if version > contract.event_version:
            raise UnknownEventVersionError(
                f"{contract.event_name} v{version} at {self.log}#{notification.id}: "
                f"this consumer reads up to v{contract.event_version}"
            )
        while version < contract.event_version:
            state = contract.upcasters[version](state)
            version += 1
        state[contract.subject_field] = notification.originator_id
        state["log"] = self.log
        state["position"] = notification.id
        state["stream_version"] = notification.originator_version
        state["occurred_at"] = state.pop("timestamp")
        state["correlation_id"] = cause.get("correlation_id")
        return contract.model_validate(state)


def schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of every published event, keyed by name and version."""
    return {f"{c.event_name}.v{c.event_version}": c.model_json_schema() for c in ALL_CONTRACTS}
