"""A reference model of the partner program, written from ``../shared/DOMAIN.md`` (and decision
16 for what each date means) alone: plain Python, nothing from ``services/`` or ``shared/``.

It is meant to be read as the specification of what the three services must agree on, for the
part of the program it covers: partners and their ``sell`` and ``refer`` tiers, registrations
(first to register wins, possible duplicates, poaching), contracts (late reports, renewals,
cancellations), the policy over time, exchange rates, and the monthly statements. Everything
happens on one program day, ``today``; ``advance`` lets days pass.

Where DOMAIN.md is silent the model follows the reading the services chose (each such place
says so, "(service's reading)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from dateutil.relativedelta import relativedelta

REPORTING = "USD"
PROTECTION = timedelta(days=90)
RENEWAL_WINDOW = timedelta(days=90)
OPEN = ("approved", "pending_review", "conflict", "returned")
SELL_TIERS = ("registered", "certified", "premier_certified", "alliance")
REFER_TIERS = ("associate", "premium_associate")

Alternatives = tuple[tuple[tuple[str, Decimal], ...], ...]
"""Ways to reach a tier: any one alternative, with every metric of it at its minimum."""


@dataclass(frozen=True)
class Policy:
    """One version of the program's numbers (DOMAIN.md's by default)."""

    certified: Alternatives = (
        (("first_year_value", Decimal("25000")),),
        (("approved_registrations", Decimal("10")),),
    )
    premier_certified: Alternatives = (
        (("first_year_value", Decimal("100000")), ("regions", Decimal("2"))),
    )
    alliance: Alternatives = (
        (("first_year_value", Decimal("1000000")), ("regions", Decimal("2"))),
    )
    premium_associate: Alternatives = ((("won_referrals", Decimal("5")),),)
    window_days: int = 365
    grace_quarters: int = 1
    margin: tuple[tuple[str, Decimal], ...] = (
        ("registered", Decimal("0.05")),
        ("certified", Decimal("0.10")),
        ("premier_certified", Decimal("0.15")),
        ("alliance", Decimal("0.20")),
    )
    new_business_bonus: Decimal = Decimal("0.05")
    poaching_cap: Decimal = Decimal("0.05")
    referral_fee: Decimal = Decimal("0.10")
    premium_rate: Decimal = Decimal("0.03")
    premium_referrals: int = 5
    clawback_days: int = 90

    def ladder(self, motion: str) -> list[tuple[str, Alternatives]]:
        if motion == "sell":
            return [
                ("registered", ()),
                ("certified", self.certified),
                ("premier_certified", self.premier_certified),
                ("alliance", self.alliance),
            ]
        return [("associate", ()), ("premium_associate", self.premium_associate)]

    def rate_for(self, tier: str) -> Decimal:
        return dict(self.margin)[tier]


DEFAULT = Policy()


def rounded(amount: Decimal) -> Decimal:
    """Half-even to the cent (USD and EUR have two decimals): once, on a statement line."""
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def next_period(period: str) -> str:
    year, month = map(int, period.split("-"))
    return period_of(date(year, month, 1) + relativedelta(months=1))


def within(day: date, today: date, window_days: int) -> bool:
    """In the trailing window ending today (service's reading: a day 365 days ago counts)."""
    return today - timedelta(days=window_days) <= day <= today


def is_quarter_start(day: date) -> bool:
    return day.day == 1 and day.month in (1, 4, 7, 10)


# --- the program's members, deals and contracts -------------------------------------------------


@dataclass
class Partner:
    enrolled_on: date
    regions: int
    sell: bool
    influencer: bool
    tiers: dict[str, str]
    below: dict[str, int] = field(default_factory=dict)
    """Quarterly reviews in a row that found the motion below its tier."""
    movements: list[tuple[str, str, date, str]] = field(default_factory=list)
    elected: bool = False
    inactive_at: date | None = None
    """The review that last flagged it a non-performer (a later review that does not, clears
    it)."""


@dataclass
class Registration:
    partner: int
    customer: int
    motion: str
    status: str
    protected_until: date | None = None
    approved_on: date | None = None
    incumbent: int | None = None
    """The contract whose renewal window this registration poaches in, if any."""
    submitted_on: date | None = None


@dataclass(frozen=True)
class Term:
    start: date
    months: int
    mrr: Decimal

    def end(self) -> date:
        return self.start + relativedelta(months=self.months) - timedelta(days=1)

    def month_starts(self) -> list[date]:
        return [self.start + relativedelta(months=i) for i in range(self.months)]


@dataclass
class Contract:
    partner: int | None
    customer: int
    motion: str
    currency: str
    terms: list[Term]
    one_time: Decimal
    reported_on: date
    poached: bool = False
    cancelled_on: date | None = None
    earning: tuple[str, Decimal] | None = None
    """How it earns each month (rule, rate), fixed when it is signed."""
    paid_months: dict[date, Decimal] = field(default_factory=dict)
    one_time_paid: list[Decimal] = field(default_factory=list)
    reversed_months: set[date] = field(default_factory=set)
    clawed_back: bool = False

    @property
    def end(self) -> date:
        return self.terms[-1].end()

    @property
    def won_on(self) -> date:
        """Its signature: its start, or the day it was reported if that was earlier."""
        return min(self.terms[0].start, self.reported_on)

    def first_year_value(self, term: int = 0) -> Decimal:
        """MRR x min(term, 12) + one-time amounts (a renewal's term has no one-time amount)."""
        t = self.terms[term]
        return t.mrr * min(t.months, 12) + (self.one_time if term == 0 else Decimal(0))

    def counts_on(self, term: Term, day: date, window_days: int) -> bool:
        """From its start date until its cancellation takes effect, in the trailing window."""
        return within(term.start, day, window_days) and (
            self.cancelled_on is None or day < self.cancelled_on
        )


@dataclass(frozen=True)
class Line:
    period: str
    """The statement it is on: the month it was earned in, or the first one still open."""
    earned_in: str
    rule: str
    amount: Decimal
    currency: str
    contract: int


class Program:
    """The whole program, on one program day."""

    def __init__(self, today: date) -> None:
        self.today = today
        self.policies: list[tuple[date, Policy]] = [(date.min, DEFAULT)]
        self.rates: dict[tuple[date, str], Decimal] = {}
        self.partners: list[Partner] = []
        self.registrations: list[Registration] = []
        self.contracts: list[Contract] = []
        self.claims: dict[int, tuple[int, int, date]] = {}
        """Customer -> (partner, registration, protected until), for the one product line."""
        self.customers_contracted: set[int] = set()
        self.locks: dict[tuple[int, int], tuple[Decimal, str]] = {}
        self.lines: dict[int, list[Line]] = {}
        self.closed_through = period_of(today - relativedelta(months=1))
        self.twins: dict[int, int] = {}
        """Customers that resemble each other (possible duplicates), both ways."""

    # --- the policy and the rates ----------------------------------------------------------
    def policy_on(self, day: date) -> Policy:
        return [p for since, p in self.policies if since <= day][-1]

    def adopt(self, policy: Policy, effective_on: date) -> bool:
        """A version from a day on, never in the past; (service's reading) a version effective
        earlier than a pending one replaces it."""
        if effective_on < self.today:
            return False
        self.policies = [(d, p) for d, p in self.policies if d < effective_on]
        self.policies.append((effective_on, policy))
        if effective_on == self.today:
            self._promote_all(self.today)  # in force now: whoever it promotes is promoted now
        return True

    def publish_rate(self, month: date, currency: str, rate: Decimal) -> None:
        self.rates[(month.replace(day=1), currency)] = rate
        self._promote_all(self.today)

    def converted(self, amount: Decimal, currency: str, day: date) -> Decimal | None:
        """In the reporting currency at the rate of the day's month (service's reading: or the
        latest month before it with a rate); None when there is none yet."""
        if currency == REPORTING:
            return amount
        months = [m for (m, c) in self.rates if c == currency and m <= day.replace(day=1)]
        return amount * self.rates[(max(months), currency)] if months else None

    # --- members --------------------------------------------------------------------------
    def enrol(self, *, regions: int, sell: bool, influencer: bool) -> int:
        tiers = {"refer": "associate", **({"sell": "registered"} if sell else {})}
        partner = Partner(self.today, regions, sell, influencer, tiers)
        for motion, tier in tiers.items():
            partner.movements.append((motion, tier, self.today, "enrolled"))
        self.partners.append(partner)
        return len(self.partners) - 1

    def sign_sell_addendum(self, p: int) -> bool:
        partner = self.partners[p]
        if partner.sell:
            return False
        partner.sell = True
        partner.tiers["sell"] = "registered"
        partner.movements.append(("sell", "registered", self.today, "addendum signed"))
        self._promote(p, self.today)
        return True

    def operate_in_two_regions(self, p: int) -> bool:
        if self.partners[p].regions == 2:
            return False
        self.partners[p].regions = 2
        self._promote(p, self.today)
        return True

    # --- tiers ----------------------------------------------------------------------------
    def metrics(self, p: int, day: date) -> dict[str, Decimal]:
        window = self.policy_on(day).window_days
        value, referrals = Decimal(0), 0
        for c in self.contracts:
            if c.partner != p:
                continue
            for i, term in enumerate(c.terms):
                if not c.counts_on(term, day, window):
                    continue
                if c.motion == "sell":
                    converted = self.converted(c.first_year_value(i), c.currency, term.start)
                    value += converted or 0
                elif i == 0:
                    referrals += 1  # a referral is won once: its renewals are the vendor's
        approved = sum(
            1
            for r in self.registrations
            if r.partner == p
            and r.motion == "sell"
            and r.approved_on is not None
            and within(r.approved_on, day, window)
        )
        return {
            "first_year_value": value,
            "approved_registrations": Decimal(approved),
            "regions": Decimal(self.partners[p].regions),
            "won_referrals": Decimal(referrals),
        }

    def reached(self, p: int, motion: str, day: date, policy: Policy) -> int:
        metrics = self.metrics(p, day)
        rank = 0
        for index, (_, alternatives) in enumerate(policy.ladder(motion)):
            if any(all(metrics[m] >= need for m, need in alt) for alt in alternatives):
                rank = index
        return rank

    def _rank(self, motion: str, tier: str) -> int:
        return (SELL_TIERS if motion == "sell" else REFER_TIERS).index(tier)

    def _move(self, p: int, motion: str, rank: int, day: date, reason: str) -> None:
        partner = self.partners[p]
        tier = (SELL_TIERS if motion == "sell" else REFER_TIERS)[rank]
        partner.tiers[motion] = tier
        partner.below.pop(motion, None)
        partner.movements.append((motion, tier, day, reason))

    def _promote(self, p: int, day: date) -> None:
        """Promotion takes effect the moment a threshold is crossed."""
        policy = self.policy_on(day)
        for motion, tier in list(self.partners[p].tiers.items()):
            reached = self.reached(p, motion, day, policy)
            if reached > self._rank(motion, tier):
                self._move(p, motion, reached, day, "promotion")

    def _promote_all(self, day: date) -> None:
        for p in range(len(self.partners)):
            self._promote(p, day)

    def _review(self, day: date) -> None:
        """Demotion only at a quarterly review, after one full quarter below (service's reading:
        below at two reviews in a row, with the default grace of one quarter)."""
        policy = self.policy_on(day)
        for p, partner in enumerate(self.partners):
            if partner.enrolled_on >= day:
                continue
            for motion, tier in list(partner.tiers.items()):
                reached = self.reached(p, motion, day, policy)
                if reached < self._rank(motion, tier):
                    if partner.below.get(motion, 0) + 1 > policy.grace_quarters:
                        self._move(p, motion, reached, day, "demotion")
                    else:
                        partner.below[motion] = partner.below.get(motion, 0) + 1
                else:
                    partner.below.pop(motion, None)
            self._promote(p, day)
            member_for_a_window = partner.enrolled_on + timedelta(days=policy.window_days)
            last = self.last_activity(p)
            idle = last is None or last < day - timedelta(days=policy.window_days)
            partner.inactive_at = day if idle and member_for_a_window <= day else None

    def last_activity(self, p: int) -> date | None:
        """The last day the partner registered a deal or brought revenue: a term brings it every
        day from its start to its end (or to the day before its cancellation takes effect; a
        term cancelled before it starts never does) (service's reading)."""
        days = [r.submitted_on for r in self.registrations if r.partner == p and r.submitted_on]
        days += [r.approved_on for r in self.registrations if r.partner == p and r.approved_on]
        for c in self.contracts:
            if c.partner != p:
                continue
            for term in c.terms if c.motion == "sell" else c.terms[:1]:
                if c.cancelled_on is not None and c.cancelled_on <= term.start:
                    continue
                last = term.end()
                if c.cancelled_on is not None:
                    last = min(last, c.cancelled_on - timedelta(days=1))
                days.append(last)
        return max(days, default=None)

    # --- registrations --------------------------------------------------------------------
    def status(self, r: int) -> str:
        reg = self.registrations[r]
        if reg.status == "approved" and reg.protected_until and reg.protected_until < self.today:
            return "expired"  # protection ends at the end of its last day
        return reg.status

    def _holder(self, customer: int) -> int | None:
        claim = self.claims.get(customer)
        return claim[0] if claim and self.today <= claim[2] else None

    def _incumbent(self, customer: int, day: date, other_than: int | None = None) -> int | None:
        """An active contract with the customer through a partner (other than one) whose renewal
        window (90 days before its end) is open on a day (the one ending last, if several)."""
        found = [
            (c.end, i)
            for i, c in enumerate(self.contracts)
            if c.customer == customer
            and c.partner is not None
            and c.partner != other_than
            and (c.cancelled_on is None or c.cancelled_on > day)
            and c.end - RENEWAL_WINDOW <= day <= c.end
        ]
        return max(found)[1] if found else None

    def _assess(self, r: int) -> None:
        reg = self.registrations[r]
        holder = self._holder(reg.customer)
        twin = self.twins.get(reg.customer)
        duplicate = twin is not None and any(
            other.customer == twin and self.status(i) in OPEN
            for i, other in enumerate(self.registrations)
            if i != r
        )
        # rule 6: another partner's customer in its renewal window (one's own is no poaching)
        reg.incumbent = self._incumbent(reg.customer, self.today, other_than=reg.partner)
        if holder is not None and holder != reg.partner:
            reg.status = "conflict"
        elif duplicate:
            reg.status = "pending_review"
        else:
            self._approve(r)

    def _approve(self, r: int) -> None:
        reg = self.registrations[r]
        reg.status, reg.approved_on = "approved", self.today
        reg.protected_until = self.today + PROTECTION
        self.claims[reg.customer] = (reg.partner, r, reg.protected_until)
        self._promote(reg.partner, self.today)  # approved is approved (the early indicator)

    def may_register(self, p: int, motion: str) -> bool:
        partner = self.partners[p]
        return not partner.influencer and (motion == "refer" or partner.sell)

    def register(self, p: int, customer: int, motion: str) -> int | str:
        """A new registration's index, or why it is refused."""
        if not self.may_register(p, motion):
            return "refused"
        if self._holder(customer) == p:
            return "already registered"
        self.registrations.append(Registration(p, customer, motion, "submitted"))
        self.registrations[-1].submitted_on = self.today
        r = len(self.registrations) - 1
        self._assess(r)
        return r

    def approve(self, r: int) -> bool:
        if self.status(r) not in ("pending_review", "conflict"):
            return False
        holder = self._holder(self.registrations[r].customer)
        if holder is not None and holder != self.registrations[r].partner:
            return False  # still protected for the other partner
        self._approve(r)
        return True

    def reject(self, r: int) -> bool:
        if self.status(r) not in ("pending_review", "conflict", "returned"):
            return False
        self.registrations[r].status = "rejected"
        return True

    def return_(self, r: int) -> bool:
        if self.status(r) not in ("pending_review", "conflict"):
            return False
        self.registrations[r].status = "returned"
        return True

    def resubmit(self, r: int) -> bool:
        if self.status(r) != "returned" or not self.may_register(
            self.registrations[r].partner, self.registrations[r].motion
        ):
            return False
        self._assess(r)
        return True

    # --- contracts ------------------------------------------------------------------------
    def sign(
        self,
        r: int | None,
        *,
        start: date,
        months: int,
        mrr: Decimal,
        currency: str,
        one_time: Decimal = Decimal(0),
        partner: int | None = None,
        customer: int | None = None,
    ) -> int | None:
        """Closed-won: of a registration (open or expired), or without one (``partner`` and
        ``customer``; no partner: the vendor's own). None when refused."""
        if r is not None:
            reg = self.registrations[r]
            if self.status(r) not in (*OPEN, "expired"):
                return None
            partner, customer, motion = reg.partner, reg.customer, reg.motion
            incumbent = reg.incumbent
            reg.status = "won"
            claim = self.claims.get(customer)
            if claim is not None and claim[1] == r:
                del self.claims[customer]  # won: the protection is released
        else:
            assert customer is not None
            motion = "sell"
            incumbent = self._incumbent(customer, start)
        poached = incumbent is not None and self.contracts[incumbent].partner != partner
        contract = Contract(
            partner, customer, motion, currency, [Term(start, months, mrr)], one_time, self.today
        )
        contract.poached = poached
        self.contracts.append(contract)
        c = len(self.contracts) - 1
        new_customer = customer not in self.customers_contracted
        self.customers_contracted.add(customer)
        if partner is not None:
            if not self.partners[partner].influencer:  # influencers earn nothing
                self._commission_for_signature(c, new_customer)
            self._promote(partner, self.today)  # what it books counts for its tiers all the same
        return c

    def won_referrals(self, p: int, day: date, aside: int | None = None) -> int:
        """Referrals won in the trailing window up to a day, for the premium associate election
        and its earnings: a referral is won when its contract is signed (rule 7): on its start,
        or on the day it was reported if that was earlier (service's reading: like a one-time
        fee; 12 months are 365 days with the day itself); a cancelled one no longer counts from
        the day the cancellation takes effect, as in the tier metric."""
        window = self.policy_on(day).window_days
        return sum(
            1
            for i, c in enumerate(self.contracts)
            if i != aside
            and c.partner == p
            and c.motion == "refer"
            and day - timedelta(days=window - 1) <= c.won_on <= day
            and (c.cancelled_on is None or day < c.cancelled_on)
        )

    def _commission_for_signature(self, c: int, new_customer: bool) -> None:
        contract = self.contracts[c]
        assert contract.partner is not None
        p = contract.partner
        won_on = contract.won_on
        policy = self.policy_on(won_on)
        fyv = contract.first_year_value()
        if contract.motion == "refer":
            earlier = self.won_referrals(p, won_on, aside=c)
            if self.partners[p].elected and earlier >= policy.premium_referrals:
                contract.earning = ("premium_associate", policy.premium_rate)
            else:
                self._one_time(c, "referral_fee", policy.referral_fee * fyv, won_on)
            return
        lock = self.locks.get((p, contract.customer))
        if lock is None:
            tier = self.partners[p].tiers.get("sell", "registered")  # held before this contract
            lock = self.locks[(p, contract.customer)] = (policy.rate_for(tier), tier)
        if contract.poached and lock[0] > policy.poaching_cap:
            contract.earning = ("poaching_cap", policy.poaching_cap)
        else:
            contract.earning = ("resale_margin", lock[0])
        if new_customer and not contract.poached and policy.new_business_bonus:
            self._one_time(c, "new_business_bonus", policy.new_business_bonus * fyv, won_on)

    def _one_time(self, c: int, rule: str, amount: Decimal, day: date) -> None:
        line = self._enter(c, rule, rounded(amount), period_of(day))
        self.contracts[c].one_time_paid.append(line.amount)

    def _enter(self, c: int, rule: str, amount: Decimal, earned_in: str) -> Line:
        """Into the statement of the month it was earned in, or the first one still open."""
        contract = self.contracts[c]
        assert contract.partner is not None
        period = earned_in if earned_in > self.closed_through else next_period(self.closed_through)
        line = Line(period, earned_in, rule, amount, contract.currency, c)
        self.lines.setdefault(contract.partner, []).append(line)
        return line

    def renew(self, c: int, *, months: int, mrr: Decimal | None) -> bool:
        """A new term from the day after the current end (a cancelled contract cannot renew)."""
        contract = self.contracts[c]
        if contract.cancelled_on is not None:
            return False
        start = contract.end + timedelta(days=1)
        contract.terms.append(Term(start, months, contract.terms[-1].mrr if mrr is None else mrr))
        if contract.partner is not None:
            self._promote(contract.partner, self.today)
        return True

    def cancel(self, c: int, effective_on: date) -> bool:
        contract = self.contracts[c]
        if contract.cancelled_on is not None or effective_on < contract.terms[0].start:
            return False
        contract.cancelled_on = effective_on
        if contract.partner is None or self.partners[contract.partner].influencer:
            return True
        policy = self.policy_on(effective_on)
        earned_in = period_of(effective_on)
        days = (effective_on - contract.terms[0].start).days
        if days <= policy.clawback_days and not contract.clawed_back:
            contract.clawed_back = True  # "within 90 days" includes day 90
            for amount in contract.one_time_paid:
                if amount > 0:
                    self._enter(c, "clawback", -amount, earned_in)
        for month, amount in sorted(contract.paid_months.items()):
            # a month that began before the cancellation took effect is kept whole
            if month >= effective_on and month not in contract.reversed_months and amount > 0:
                contract.reversed_months.add(month)
                self._enter(c, "cancellation_adjustment", -amount, earned_in)
        return True

    # --- the premium associate election ------------------------------------------------------
    def elect(self, p: int) -> bool:
        policy = self.policy_on(self.today)
        partner = self.partners[p]
        if partner.elected or self.won_referrals(p, self.today) < policy.premium_referrals:
            return False
        partner.elected = True
        return True

    def withdraw(self, p: int) -> bool:
        if not self.partners[p].elected:
            return False
        self.partners[p].elected = False
        return True

    # --- time -----------------------------------------------------------------------------
    def advance(self, until: date) -> None:
        """Days pass: contracts that start promote on their start day, policy versions take
        effect, quarters are reviewed; then each month begun earns and each month ended closes."""
        day = self.today
        while day < until:
            day += timedelta(days=1)
            self.today = day
            if is_quarter_start(day):
                self._review(day)
            self._promote_all(day)
        self._accrue(until)
        self.closed_through = max(
            self.closed_through, period_of(until.replace(day=1) - timedelta(days=1))
        )

    def _accrue(self, until: date) -> None:
        for c, contract in enumerate(self.contracts):
            if contract.earning is None:
                continue
            rule, rate = contract.earning
            terms = contract.terms if contract.motion != "refer" else contract.terms[:1]
            for term in terms:
                for month in term.month_starts():
                    if month > until or month in contract.paid_months:
                        continue
                    if contract.cancelled_on is not None and month >= contract.cancelled_on:
                        continue
                    line = self._enter(c, rule, rounded(rate * term.mrr), period_of(month))
                    contract.paid_months[month] = line.amount

    # --- what the services must show --------------------------------------------------------
    def non_performers(self) -> dict[int, date]:
        """Partners enrolled for a whole window with no registration and no revenue in the
        trailing window, flagged at the last quarterly review."""
        return {p: x.inactive_at for p, x in enumerate(self.partners) if x.inactive_at}

    def tiers(self, p: int) -> dict[str, str]:
        return dict(self.partners[p].tiers)

    def statement_lines(self, p: int) -> list[Line]:
        return list(self.lines.get(p, []))

    def statement_status(self, period: str) -> str:
        return "issued" if period <= self.closed_through else "open"
