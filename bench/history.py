"""Generate a realistic history of a partner program across the three services, through their
public HTTP APIs only, as a CRM, channel managers, finance and partners would.

The three services run as real processes (``dealreg serve``) on a database of their own. The
generator enrols partners, publishes exchange rates, records achievements, registers deals (the
bulk import for most of them, single registrations for some: conflicts, near duplicates,
rejections, approvals, returns, extensions, withdrawals, losses), reports contracts won (some in
other currencies, some poached, some the vendor's own, some in the contract import), renewals
and cancellations, a premium associate election and a policy adopted ahead of its effective
date, and runs time forward month by month with each service's ``POST /v1/admin/clock``:
tiering's on the first of the month (quarterly reviews, the policy taking effect),
registration's and commissions' each week (expiry, overdue reviews, renewal notices; months
paid, statements issued). It stops at the first month end where the three logs hold
``--events`` events together, and prints the events per log, the time taken and events/s.

    python -m bench.history --events 100000 [--seed N] [--keep] [--database-url URL]

The database is that of a PostgreSQL server of its own (the embedded wheel's, on 127.0.0.1
with 300 connections: ``bench.services.tcp_server``), unless ``--database-url`` (or
BENCH_DATABASE_URL) names a server, on which a database ``dealreg_bench_<random>`` is created.
Either is deleted afterwards, or kept with ``--keep``, for ``dealreg audit replay``.

Time in a service never runs behind the wall clock, so the history starts at ``--start`` (the
first day of next month by default) and runs ahead of today. The same ``--seed``, ``--events``
and ``--start`` send the same requests in the same order, and the generator waits for the
followers wherever an answer depends on them, so the logs hold the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import csv
import io
import json
import os
import platform
import random
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import psycopg
from psycopg import sql

from bench.services import SECRET, Service, as_url, bench_database, free_port
from shared.auth import Role, mint_token

T = TypeVar("T")

SERVICES = ("registration", "tiering", "commissions")
IN_FLIGHT = 8
"""Requests sent at once where their order does not matter."""
IMPORT_ROWS = 400
"""Rows per import request (the service records them a hundred per transaction)."""
CATCH_UP_SECONDS = 1800
MAX_MONTHS = 120
MAX_CONNECTIONS = 300
"""The three services under load hold more than PostgreSQL's default of 100 connections."""

PRODUCT_LINES = ["cloud", "cloud", "cloud", "security", "analytics", "platform"]
# (country, currency, region, weight)
COUNTRIES = [
    ("US", "USD", "NA", 40),
    ("CA", "USD", "NA", 6),
    ("GB", "GBP", "EMEA", 12),
    ("DE", "EUR", "EMEA", 12),
    ("FR", "EUR", "EMEA", 8),
    ("NL", "EUR", "EMEA", 5),
    ("JP", "JPY", "APAC", 6),
    ("AU", "AUD", "APAC", 6),
    ("BR", "USD", "LATAM", 5),
]
RATES = {
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "JPY": Decimal("0.0067"),
    "AUD": Decimal("0.66"),
}
SCALE = {"USD": 1, "EUR": 1, "GBP": 1, "AUD": 1, "JPY": 150}
"""How many units of a currency make about one US dollar (amounts are drawn in dollars)."""
SYLLABLES = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "ix")]
SUFFIXES = ["", "", "", " Inc", " Ltd", " GmbH", " Group", " Systems", " Holdings", " Labs"]
TLDS = {"US": "com", "CA": "ca", "GB": "co.uk", "DE": "de", "FR": "fr", "NL": "nl", "JP": "co.jp"}
REJECTION_REASONS = [
    "duplicate",
    "not_a_qualified_opportunity",
    "customer_not_eligible",
    "partner_not_eligible",
]
# Partner kinds: (share, function, category, addenda)
KINDS = {
    "reseller": (0.62, "sales", "solution_reseller", ["sell"]),
    "cloud": (0.10, "sales", "cloud_reseller", ["sell"]),
    "referrer": (0.12, "sales", "sales_agent", []),
    "services": (0.08, "service", "business_services", ["sell", "service"]),
    "msp": (0.04, "solution", "msp_cmsp", ["manage"]),
    "isv": (0.04, "solution", "isv_ihv", ["build"]),
}


def month_start(day: date, months: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def add_months(day: date, months: int) -> date:
    """As registration computes a term's end: the 31st plus a month is the 28th of February."""
    first = month_start(day, months)
    return first.replace(day=min(day.day, calendar.monthrange(first.year, first.month)[1]))


def at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def bearer(secret: str, role: Role, partner_id: str | None = None) -> dict[str, str]:
    token = mint_token(
        secret,
        role,
        subject=f"history-{role.value}",
        partner_id=None if partner_id is None else UUID(partner_id),
    )
    return {"Authorization": f"Bearer {token}"}


# --- the world as the CRM sees it ----------------------------------------------------------


@dataclass
class Partner:
    id: str
    name: str
    kind: str
    country: str
    currency: str
    regions: list[str]
    motions: list[str]
    weight: float
    offboarded: bool = False


@dataclass(frozen=True)
class Customer:
    name: str
    country: str
    domain: str | None

    def body(self) -> dict[str, Any]:
        return {"name": self.name, "country": self.country, "domain": self.domain}


@dataclass
class Deal:
    """A registration."""

    id: str
    partner: Partner
    customer: Customer
    product_line: str
    motion: str
    value: Decimal
    currency: str
    status: str
    day: date
    external_id: str | None
    protected_until: date | None = None
    extended: bool = False


@dataclass
class Agreement:
    """A contract."""

    id: str
    partner: Partner | None
    customer: Customer
    motion: str | None
    start: date
    end: date
    mrr: Decimal
    currency: str
    decided: bool = False
    """Renewed, cancelled or let go this term: nothing more to do until the next."""


@dataclass
class Plan:
    """How much happens in a month, from the number of events wanted (about two years' worth)."""

    partners: int
    new_partners: int
    registrations: int
    """Per week."""

    @classmethod
    def for_events(cls, events: int) -> Plan:
        scale = events / 100_000
        return cls(
            partners=max(10, round(140 * scale)),
            new_partners=round(3 * scale),
            registrations=max(5, round(56 * scale)),
        )


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Time spent per kind of request (summed over those in flight at once), and waiting for
    the followers."""
    outcomes: Counter[str] = field(default_factory=Counter)
    surprises: list[str] = field(default_factory=list)


class History:
    def __init__(
        self,
        urls: dict[str, str],
        plan: Plan,
        *,
        seed: int,
        start: date,
        secret: str,
        in_flight: int,
    ) -> None:
        self.in_flight = in_flight
        self.urls = urls
        self.secret = secret
        self.plan = plan
        self.rng = random.Random(seed)
        self.today = start
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.stats = Stats()
        self.partners: list[Partner] = []
        self.by_id: dict[str, Partner] = {}
        self.deals: list[Deal] = []
        self.open_deals: dict[str, Deal] = {}
        self.active: dict[str, Agreement] = {}
        self.waiting_review: list[Deal] = []
        self.returned: list[Deal] = []
        self.conflicts: list[Deal] = []
        self.names: set[str] = set()
        self.serial = 0
        self.admin = bearer(secret, Role.ADMIN)
        self.crm = bearer(secret, Role.CRM)
        self.manager = bearer(secret, Role.CHANNEL_MANAGER)
        self.finance = bearer(secret, Role.FINANCE)
        self.tokens: dict[str, dict[str, str]] = {}
        self.semaphore = asyncio.Semaphore(in_flight)

    # --- plumbing ---------------------------------------------------------------------------
    async def __aenter__(self) -> History:
        for name, url in self.urls.items():
            self.clients[name] = httpx.AsyncClient(
                base_url=url,
                timeout=httpx.Timeout(600.0),
                limits=httpx.Limits(max_connections=self.in_flight * 2),
            )
        return self

    async def __aexit__(self, *_: object) -> None:
        for client in self.clients.values():
            await client.aclose()

    def partner_token(self, partner: Partner) -> dict[str, str]:
        if partner.id not in self.tokens:
            self.tokens[partner.id] = bearer(self.secret, Role.PARTNER, partner.id)
        return self.tokens[partner.id]

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        expect: Iterable[int] = (200, 201),
        **kwargs: Any,
    ) -> httpx.Response:
        async with self.semaphore:
            began = time.perf_counter()
            response = await self.clients[service].request(method, path, headers=headers, **kwargs)
        route = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", path)
        self.stats.requests[f"{method} {service} {route}"] += 1
        self.stats.seconds[f"{method} {service} {route}"] += time.perf_counter() - began
        if response.status_code not in expect:
            note = f"{method} {service} {route} -> {response.status_code}: {response.text[:300]}"
            self.stats.surprises.append(note)
            if len(self.stats.surprises) <= 20:
                print(f"  unexpected: {note}", flush=True)
        return response

    async def each(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*calls))

    async def lag(self, services: Sequence[str]) -> int:
        total = 0
        for name in services:
            response = await self.clients[name].get("/metrics")
            for line in response.text.splitlines():
                if line.startswith("dealreg_subscription_lag_events{"):
                    total += int(float(line.rsplit(" ", 1)[1]))
        return total

    async def caught_up(self, services: Sequence[str] = SERVICES) -> None:
        """Until every follower of the services has applied everything (so that what is
        decided next is decided on the same facts in every run)."""
        began = time.monotonic()
        while await self.lag(services):
            if time.monotonic() > began + CATCH_UP_SECONDS:
                raise SystemExit(f"the followers did not catch up in {CATCH_UP_SECONDS}s")
            await asyncio.sleep(0.05)
        self.stats.seconds["waiting for the followers"] += time.monotonic() - began

    async def heads(self) -> dict[str, int]:
        heads = {}
        for name in SERVICES:
            response = await self.clients[name].get(
                "/v1/events", params={"after": 2**62, "limit": 1}, headers=self.admin
            )
            heads[name] = int(response.json()["head"])
        return heads

    async def run_clock(self, service: str, until: datetime) -> None:
        await self.call(
            service,
            "POST",
            "/v1/admin/clock",
            json={"until": until.isoformat()},
            headers=self.admin,
        )

    # --- invention --------------------------------------------------------------------------
    def pick_country(self) -> tuple[str, str, str]:
        country, currency, region, _ = self.rng.choices(
            COUNTRIES, weights=[c[3] for c in COUNTRIES]
        )[0]
        return country, currency, region

    def company(self) -> str:
        while True:
            words = (
                "".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 4))).capitalize()
                for _ in range(2)
            )
            name = " ".join(words) + self.rng.choice(SUFFIXES)
            if name not in self.names:
                self.names.add(name)
                return name

    def customer(self, country: str | None = None) -> Customer:
        country = country or self.pick_country()[0]
        name = self.company()
        if self.rng.random() < 0.08:
            return Customer(name, country, None)  # known by name and country only
        stem = re.sub(r"[^a-z]", "", name.lower().rsplit(" ", 1)[0] if " " in name else name)
        return Customer(name, country, f"{stem}.{TLDS.get(country, 'com')}")

    def near_duplicate(self, of: Customer) -> Customer:
        name = of.name
        i = self.rng.randrange(1, max(2, len(name) - 2))
        typo = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
        return Customer(typo, of.country, None)

    def amount(self, dollars: float, currency: str) -> Decimal:
        value = Decimal(str(round(dollars * SCALE[currency], -1 if currency == "JPY" else 0)))
        return value.quantize(Decimal(1) if currency == "JPY" else Decimal("0.01"))

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial:07d}"

    def active_partners(self, *motions: str) -> list[Partner]:
        return [
            p
            for p in self.partners
            if not p.offboarded and (not motions or any(m in p.motions for m in motions))
        ]

    def pick_partner(self, motion: str) -> Partner:
        members = (
            [p for p in self.active_partners() if p.kind == "referrer" or "sell" in p.motions]
            if motion == "refer"
            else self.active_partners(motion)
        )
        return self.rng.choices(members, weights=[p.weight for p in members])[0]

    # --- the program --------------------------------------------------------------------------
    async def enrol(self, count: int, kind: str | None = None) -> list[Partner]:
        kinds = list(KINDS)
        chosen = [
            kind or self.rng.choices(kinds, weights=[KINDS[k][0] for k in kinds])[0]
            for _ in range(count)
        ]
        bodies: list[tuple[str, str, str, list[str], dict[str, Any]]] = []
        for kind_ in chosen:
            country, currency, region = self.pick_country()
            _, function, category, motions = KINDS[kind_]
            regions = [region]
            if self.rng.random() < 0.2:
                regions.append(self.rng.choice([r for r in ("NA", "EMEA", "APAC") if r != region]))
            name = self.company().split(" ")[0] + self.rng.choice(
                [" Partners", " Solutions", " IT", " Consulting", " Digital", " Networks"]
            )
            bodies.append(
                (
                    kind_,
                    country,
                    currency,
                    regions,
                    {
                        "legal_name": name,
                        "home_country": country,
                        "regions": regions,
                        "motions": motions,
                        "function": function,
                        "category": category,
                        "management": self.rng.choice(["formal_program", "one_on_one", "sla"]),
                    },
                )
            )
        responses = await self.each(
            [
                self.call("tiering", "POST", "/v1/partners", json=body, headers=self.manager)
                for *_, body in bodies
            ]
        )
        enrolled = []
        for (kind_, country, currency, regions, body), response in zip(
            bodies, responses, strict=True
        ):
            if response.status_code != 201:
                continue
            partner = Partner(
                id=response.json()["partner_id"],
                name=body["legal_name"],
                kind=kind_,
                country=country,
                currency=currency,
                regions=regions,
                motions=list(body["motions"]),
                weight=self.rng.paretovariate(1.6),  # a few partners bring most of the deals
            )
            enrolled.append(partner)
        self.partners += enrolled
        self.by_id.update((p.id, p) for p in enrolled)
        return enrolled

    async def publish_rates(self, month: date) -> None:
        drift = {c: r * Decimal(str(1 + self.rng.uniform(-0.03, 0.03))) for c, r in RATES.items()}
        body = {
            "month": month.isoformat(),
            "rates": {c: str(r.quantize(Decimal("0.0001"))) for c, r in drift.items()},
        }
        await self.call("tiering", "POST", "/v1/program/rates", json=body, headers=self.finance)

    async def achievements(self, month: date, index: int) -> None:
        calls: list[tuple[str, dict[str, Any]]] = []
        for partner in self.active_partners():
            base = f"/v1/partners/{partner.id}"
            if "service" in partner.motions:
                for _ in range(self.rng.choice([0, 1, 1, 2])):
                    calls.append(
                        (
                            f"{base}/certifications",
                            {
                                "individual": f"{self.company().split(' ')[0]} {partner.name[:3]}",
                                "certification": self.rng.choice(
                                    ["Cloud Architect", "Security Engineer", "Data Specialist"]
                                ),
                                "track": "services",
                                "expires_on": add_months(month, 24).isoformat(),
                            },
                        )
                    )
                if self.rng.random() < 0.5:
                    calls.append((f"{base}/projects", {"project": self.next_id("PRJ")}))
                if index in (3, 12):
                    calls.append(
                        (
                            f"{base}/training",
                            {"track": "services", "level": 201 if index < 6 else 301},
                        )
                    )
            if "manage" in partner.motions:
                mrr = self.amount(1500 * (1 + index / 6) * self.rng.uniform(0.7, 1.6), "USD")
                calls.append(
                    (
                        f"{base}/managed-revenue",
                        {
                            "month": month.isoformat(),
                            "mrr": {"amount": str(mrr), "currency": "USD"},
                        },
                    )
                )
            if "build" in partner.motions:
                if self.rng.random() < 0.3:
                    calls.append((f"{base}/integrations", {"integration": self.next_id("INT")}))
                for _ in range(self.rng.choice([0, 1, 2, 3])):
                    calls.append((f"{base}/joint-customers", {"customer": self.company()}))
            if "sell" in partner.motions and self.rng.random() < 0.05:
                calls.append((f"{base}/training", {"track": "sales", "level": 101}))
        await self.each(
            [
                self.call("tiering", "POST", path, json=body, headers=self.manager)
                for path, body in calls
            ]
        )

    async def membership_changes(self, index: int) -> None:
        """Addenda signed, regions widened, now and then a partner offboarded."""
        if index % 4 == 2:
            referrers = [
                p for p in self.active_partners() if p.kind == "referrer" and not p.motions
            ]
            if referrers:
                partner = self.rng.choice(referrers)
                response = await self.call(
                    "tiering",
                    "POST",
                    f"/v1/partners/{partner.id}/addenda",
                    json={"motion": "sell"},
                    headers=self.manager,
                )
                if response.status_code == 200:
                    partner.motions.append("sell")
        if index % 3 == 1:
            sellers = sorted(self.active_partners("sell"), key=lambda p: -p.weight)[:10]
            narrow = [p for p in sellers if len(p.regions) == 1]
            if narrow:
                partner = narrow[0]
                wider = [*partner.regions, "NA" if partner.regions[0] != "NA" else "EMEA"]
                response = await self.call(
                    "tiering",
                    "PUT",
                    f"/v1/partners/{partner.id}/regions",
                    json={"regions": wider},
                    headers=self.manager,
                )
                if response.status_code == 200:
                    partner.regions = wider
        if index in (9, 17):
            quiet = sorted(self.active_partners("sell"), key=lambda p: p.weight)[0]
            await self.call(
                "tiering",
                "POST",
                f"/v1/partners/{quiet.id}/offboarding",
                json={"reason": "no activity; agreement not renewed"},
                headers=self.manager,
            )
            quiet.offboarded = True
            # registration learns of it from tiering's log: once it has (a fact, not a time),
            # its CRM still sends one, refused: the partner is no longer in the program
            await self.caught_up(("registration",))
            await self.call(
                "registration",
                "POST",
                "/v1/registrations",
                json=self.registration_body(quiet, self.customer(), "cloud", "sell"),
                headers=self.crm,
                expect=(422,),
            )

    async def adopt_policy(self, effective_on: date) -> None:
        """Version 2: certified from 20,000 and a richer certified margin, from a later day."""
        current = await self.call(
            "tiering", "GET", "/v1/program/policy/1", headers=self.admin, expect=(200,)
        )
        document = current.json()
        for tier in document["tiers"]["motions"]["sell"]["tiers"]:
            if tier["name"] == "certified":
                for way in tier["any_of"]:
                    if "first_year_value" in way:
                        way["first_year_value"] = "20000"
        document["commissions"]["resale_margin"]["certified"] = "0.11"
        await self.call(
            "tiering",
            "POST",
            "/v1/program/policy",
            params={
                "effective_on": effective_on.isoformat(),
                "note": "certified from 20k, with 11% margin",
            },
            content=json.dumps(document),
            headers={**self.admin, "content-type": "application/json"},
        )

    # --- registrations ------------------------------------------------------------------------
    def registration_body(
        self,
        partner: Partner,
        customer: Customer,
        product_line: str,
        motion: str,
        *,
        external_id: str | None = None,
        value: Decimal | None = None,
    ) -> dict[str, Any]:
        currency = partner.currency
        value = value or self.amount(self.rng.lognormvariate(9.8, 0.8), currency)
        return {
            "partner_id": partner.id,
            "customer": customer.body(),
            "product_line": product_line,
            "motion": motion,
            "estimated_value": {"amount": str(value), "currency": currency},
            "expected_close": (self.today + timedelta(days=self.rng.randint(30, 150))).isoformat(),
            "external_id": external_id,
        }

    def week_rows(self, count: int) -> list[dict[str, Any]]:
        """A week of the CRM's opportunities: most for new customers; some for a customer
        another partner holds (conflict), some a near duplicate of an open registration
        (review), a few broken."""
        rows = []
        held = [
            d
            for d in self.open_deals.values()
            if d.status == "approved" and (self.today - d.day).days < 60
        ]
        for _ in range(count):
            roll = self.rng.random()
            motion = "refer" if roll > 0.9 else "sell"
            partner = self.pick_partner(motion)
            product_line = self.rng.choice(PRODUCT_LINES)
            customer = self.customer(partner.country if self.rng.random() < 0.7 else None)
            if roll < 0.06 and held:
                other = self.rng.choice(held)
                if other.partner is not partner and other.motion == "sell":
                    customer, product_line = other.customer, other.product_line
            elif roll < 0.10 and held:
                other = self.rng.choice(held)
                customer, product_line = self.near_duplicate(other.customer), other.product_line
            body = self.registration_body(
                partner, customer, product_line, motion, external_id=self.next_id("OPP")
            )
            if roll > 0.995:
                body["estimated_value"]["currency"] = "dollars"  # the CRM's own mistake
            rows.append(body)
        return rows

    def record_deal(self, body: dict[str, Any], registration_id: str, status: str) -> Deal:
        partner = self.by_id[body["partner_id"]]
        customer = Customer(
            body["customer"]["name"], body["customer"]["country"], body["customer"]["domain"]
        )
        deal = Deal(
            id=registration_id,
            partner=partner,
            customer=customer,
            product_line=body["product_line"],
            motion=body["motion"],
            value=Decimal(body["estimated_value"]["amount"]),
            currency=body["estimated_value"]["currency"],
            status=status,
            day=self.today,
            external_id=body.get("external_id"),
            protected_until=self.today + timedelta(days=90) if status == "approved" else None,
        )
        self.deals.append(deal)
        if status in ("approved", "pending_review"):
            self.open_deals[deal.id] = deal
        if status == "pending_review":
            self.waiting_review.append(deal)
        if status == "conflict":
            self.conflicts.append(deal)
        self.stats.outcomes[f"registration {status}"] += 1
        return deal

    async def import_rows(self, rows: list[dict[str, Any]], as_csv: bool) -> None:
        chunks = [rows[i : i + IMPORT_ROWS] for i in range(0, len(rows), IMPORT_ROWS)]
        for chunk in chunks:
            if as_csv:
                content, media_type = csv_registrations(chunk), "text/csv"
                first_line = 2
            else:
                content = "\n".join(json.dumps(row) for row in chunk)
                media_type, first_line = "application/x-ndjson", 1
            response = await self.call(
                "registration",
                "POST",
                "/v1/imports/registrations",
                content=content.encode(),
                headers={**self.crm, "content-type": media_type},
            )
            if response.status_code != 200:
                continue
            for result in response.json()["results"]:
                row = chunk[result["line"] - first_line]
                if result["status"] == "recorded":
                    self.record_deal(row, result["id"], result["registration_status"])
                else:
                    self.stats.outcomes[f"import row {result['status']}"] += 1

    async def rerun_import(self) -> None:
        """The CRM's sync sends an old batch again: every row is unchanged."""
        old = [d for d in self.deals[-200:] if d.external_id][:40]
        if not old:
            return
        rows = [
            self.registration_body(
                d.partner, d.customer, d.product_line, d.motion, external_id=d.external_id
            )
            for d in old
        ]
        response = await self.call(
            "registration",
            "POST",
            "/v1/imports/registrations",
            content="\n".join(json.dumps(r) for r in rows).encode(),
            headers={**self.crm, "content-type": "application/x-ndjson"},
        )
        if response.status_code == 200:
            self.stats.outcomes["rerun rows unchanged"] += response.json()["unchanged"]

    async def single_registrations(self, count: int) -> None:
        """Partners registering in the portal, one at a time; now and then the same customer
        twice (already registered)."""
        calls = []
        for _ in range(count):
            partner = self.pick_partner("sell")
            body = self.registration_body(
                partner, self.customer(partner.country), self.rng.choice(PRODUCT_LINES), "sell"
            )
            body.pop("external_id")
            calls.append(body)
        responses = await self.each(
            [
                self.call(
                    "registration",
                    "POST",
                    "/v1/registrations",
                    json=body,
                    headers={
                        **self.partner_token(self.by_id[body["partner_id"]]),
                        "Idempotency-Key": self.next_id("portal"),
                    },
                )
                for body in calls
            ]
        )
        again = []
        for body, response in zip(calls, responses, strict=True):
            if response.status_code == 201:
                answer = response.json()
                deal = self.record_deal(body, answer["registration_id"], answer["status"])
                if deal.status == "approved" and self.rng.random() < 0.1:
                    again.append(body)
        for body in again:  # a double click in the portal, a minute later
            partner = self.by_id[body["partner_id"]]
            await self.call(
                "registration",
                "POST",
                "/v1/registrations",
                json=body,
                headers=self.partner_token(partner),
                expect=(409,),
            )

    async def review(self) -> None:
        """Channel managers work the queue: most approved, some rejected, a few returned; what
        they leave falls overdue. Returned registrations come back with a domain."""
        queue, self.waiting_review = self.waiting_review, []
        decisions: list[tuple[Deal, str, dict[str, Any] | None]] = []
        for deal in queue:
            roll = self.rng.random()
            if roll < 0.2:
                self.waiting_review.append(deal)  # left for next week: it falls overdue
            elif roll < 0.75:
                decisions.append((deal, "approval", None))
            elif roll < 0.92:
                reason = self.rng.choice(REJECTION_REASONS)
                decisions.append((deal, "rejection", {"reason_code": reason, "note": "reviewed"}))
            else:
                decisions.append((deal, "return", {"note": "which site is this for?"}))
        responses = await self.each(
            [
                self.call(
                    "registration",
                    "POST",
                    f"/v1/registrations/{deal.id}/{action}",
                    json=body,
                    headers=self.manager,
                    expect=(200, 409),
                )
                for deal, action, body in decisions
            ]
        )
        for (deal, action, _), response in zip(decisions, responses, strict=True):
            if response.status_code != 200:
                self.stats.outcomes[f"review {action} refused"] += 1
                continue
            deal.status = response.json()["status"]
            self.stats.outcomes[f"review {action}"] += 1
            if deal.status == "approved":
                deal.protected_until = self.today + timedelta(days=90)
            elif deal.status == "returned":
                self.returned.append(deal)
            else:
                self.open_deals.pop(deal.id, None)
        # last week's returns come back with the customer's web domain
        returned, self.returned = self.returned, []
        resubmissions = []
        for deal in returned:
            stem = re.sub(r"[^a-z]", "", deal.customer.name.lower())[:20] or "customer"
            deal.customer = Customer(deal.customer.name, deal.customer.country, f"{stem}.net")
            body = {
                "customer": deal.customer.body(),
                "product_line": deal.product_line,
                "estimated_value": {"amount": str(deal.value), "currency": deal.currency},
                "expected_close": (self.today + timedelta(days=60)).isoformat(),
            }
            resubmissions.append(
                self.call(
                    "registration",
                    "POST",
                    f"/v1/registrations/{deal.id}/resubmission",
                    json=body,
                    headers=self.partner_token(deal.partner),
                )
            )
        for deal, response in zip(returned, await self.each(resubmissions), strict=True):
            if response.status_code == 200:
                deal.status = response.json()["status"]
                self.stats.outcomes[f"resubmitted {deal.status}"] += 1
                if deal.status == "approved":
                    deal.protected_until = self.today + timedelta(days=90)
                elif deal.status == "pending_review":
                    self.waiting_review.append(deal)

    async def conflicts_resolved(self) -> None:
        """A registration in conflict is approved once the other partner's protection ended."""
        still = []
        calls = []
        held = {(d.customer, d.product_line) for d in self.open_deals.values()}
        for deal in self.conflicts:
            if (self.today - deal.day).days > 120:
                continue  # nobody looks at it any more
            if (
                (deal.customer, deal.product_line) not in held
                and (self.today - deal.day).days > 95
                and self.rng.random() < 0.5
            ):
                calls.append(deal)
            else:
                still.append(deal)
        self.conflicts = still
        responses = await self.each(
            [
                self.call(
                    "registration",
                    "POST",
                    f"/v1/registrations/{deal.id}/approval",
                    headers=self.manager,
                    expect=(200, 409),
                )
                for deal in calls
            ]
        )
        for deal, response in zip(calls, responses, strict=True):
            if response.status_code == 200:
                deal.status, deal.protected_until = "approved", self.today + timedelta(days=90)
                self.open_deals[deal.id] = deal
                self.stats.outcomes["conflict approved later"] += 1

    async def partners_close(self) -> None:
        """Partners withdraw some registrations, report some lost, ask for more time on a few."""
        calls = []
        for deal in list(self.open_deals.values()):
            if deal.status != "approved" or deal.protected_until is None:
                continue
            left = (deal.protected_until - self.today).days
            age = (self.today - deal.day).days
            roll = self.rng.random()
            if age > 14 and left > 7 and roll < 0.01:
                action, body = "withdrawal", {"reason": "the customer postponed"}
            elif age > 14 and left > 7 and roll < 0.035:
                action, body = "loss", {"reason": self.rng.choice(["price", "competitor"])}
            elif 0 < left <= 10 and not deal.extended and roll < 0.25:
                action, body = "extension-request", {"note": "procurement is slow"}
            else:
                continue
            calls.append((deal, action, body))
        responses = await self.each(
            [
                self.call(
                    "registration",
                    "POST",
                    f"/v1/registrations/{deal.id}/{action}",
                    json=body,
                    headers=self.partner_token(deal.partner),
                )
                for deal, action, body in calls
            ]
        )
        extended = []
        for (deal, action, _), response in zip(calls, responses, strict=True):
            if response.status_code != 200:
                continue
            self.stats.outcomes[f"registration {action}"] += 1
            if action == "extension-request":
                extended.append(deal)
            else:
                deal.status = response.json()["status"]
                self.open_deals.pop(deal.id, None)
        responses = await self.each(
            [
                self.call(
                    "registration",
                    "POST",
                    f"/v1/registrations/{deal.id}/extension-approval",
                    headers=self.manager,
                )
                for deal in extended
            ]
        )
        for deal, response in zip(extended, responses, strict=True):
            if response.status_code == 200:
                deal.extended = True
                deal.protected_until = date.fromisoformat(response.json()["protected_until"])

    def expire(self) -> None:
        """What the registration clock expires, as the CRM learns it."""
        for deal in list(self.open_deals.values()):
            if deal.status == "approved" and deal.protected_until is not None:
                if deal.protected_until < self.today:
                    deal.status = "expired"
                    self.open_deals.pop(deal.id)
            elif deal.status == "pending_review" and (self.today - deal.day).days > 60:
                self.open_deals.pop(deal.id)  # nobody will decide it now

    # --- contracts ----------------------------------------------------------------------------
    def contract_terms(self, currency: str, value: Decimal) -> dict[str, Any]:
        term = self.rng.choices([12, 24, 36, 6, 3], weights=[70, 14, 8, 5, 3])[0]
        mrr = (value / 12 * Decimal(str(self.rng.uniform(0.6, 1.4)))).quantize(
            Decimal(1) if currency == "JPY" else Decimal("0.01")
        )
        roll = self.rng.random()
        if roll < 0.5:
            start = self.today
        elif roll < 0.8:
            start = self.today + timedelta(days=self.rng.randint(1, 6))
        else:
            start = month_start(self.today, 1)
        terms: dict[str, Any] = {
            "start_date": start.isoformat(),
            "term_months": term,
            "mrr": {"amount": str(mrr), "currency": currency},
        }
        if self.rng.random() < 0.2:
            fee = self.amount(self.rng.uniform(500, 5000), currency)
            terms["one_time"] = {"amount": str(fee), "currency": currency}
        return terms

    async def win_deals(self) -> None:
        """The CRM reports closed-won: most in the weekly contract import, some one by one."""
        won = []
        for deal in list(self.open_deals.values()):
            age = (self.today - deal.day).days
            if deal.status != "approved" or age < 14:
                continue
            if self.rng.random() < (0.03 if deal.motion == "sell" else 0.04):
                won.append(deal)
        singles = [d for d in won if self.rng.random() < 0.15]
        batch = [d for d in won if d not in singles]
        rows = []
        for deal in batch:
            terms = self.contract_terms(deal.currency, deal.value)
            rows.append(
                {
                    "registration_id": deal.id,
                    "start_date": terms["start_date"],
                    "term_months": str(terms["term_months"]),
                    "mrr_amount": terms["mrr"]["amount"],
                    "currency": deal.currency,
                    "one_time_amount": terms.get("one_time", {}).get("amount", ""),
                    "external_id": self.next_id("WON"),
                }
            )
        if rows:
            response = await self.call(
                "registration",
                "POST",
                "/v1/imports/contracts",
                content=csv_text(rows).encode(),
                headers={**self.crm, "content-type": "text/csv"},
            )
            if response.status_code == 200:
                for result in response.json()["results"]:
                    deal, row = batch[result["line"] - 2], rows[result["line"] - 2]
                    if result["status"] != "recorded":
                        self.stats.outcomes[f"contract import {result['status']}"] += 1
                        continue
                    self.contract_won(
                        deal,
                        result["id"],
                        date.fromisoformat(row["start_date"]),
                        int(row["term_months"]),
                        Decimal(row["mrr_amount"]),
                    )
        bodies = [
            {
                "registration_id": deal.id,
                "external_id": self.next_id("WON"),
                **self.contract_terms(deal.currency, deal.value),
            }
            for deal in singles
        ]
        responses = await self.each(
            [
                self.call("registration", "POST", "/v1/contracts", json=body, headers=self.crm)
                for body in bodies
            ]
        )
        for deal, body, response in zip(singles, bodies, responses, strict=True):
            if response.status_code == 201:
                self.contract_won(
                    deal,
                    response.json()["contract_id"],
                    date.fromisoformat(body["start_date"]),
                    body["term_months"],
                    Decimal(body["mrr"]["amount"]),
                )

    def contract_won(
        self, deal: Deal, contract_id: str, start: date, term: int, mrr: Decimal
    ) -> None:
        deal.status = "won"
        self.open_deals.pop(deal.id, None)
        agreement = Agreement(
            id=contract_id,
            partner=deal.partner,
            customer=deal.customer,
            motion=deal.motion,
            start=start,
            end=add_months(start, term) - timedelta(days=1),
            mrr=mrr,
            currency=deal.currency,
        )
        self.active[contract_id] = agreement
        self.stats.outcomes[f"contract {deal.motion}"] += 1

    async def vendor_deals(self, count: int) -> None:
        """The vendor's own sales: contracts without a partner, and direct deals, some for a
        customer a partner holds (a channel conflict)."""
        bodies = []
        for _ in range(count):
            country, currency, _ = self.pick_country()
            customer = self.customer(country)
            terms = self.contract_terms(
                currency, self.amount(self.rng.uniform(8000, 60000), currency)
            )
            bodies.append(
                {"customer": customer.body(), "external_id": self.next_id("DIR"), **terms}
            )
        responses = await self.each(
            [
                self.call("registration", "POST", "/v1/contracts", json=body, headers=self.crm)
                for body in bodies
            ]
        )
        for body, response in zip(bodies, responses, strict=True):
            if response.status_code == 201:
                start = date.fromisoformat(body["start_date"])
                agreement = Agreement(
                    id=response.json()["contract_id"],
                    partner=None,
                    customer=Customer(**body["customer"]),
                    motion=None,
                    start=start,
                    end=add_months(start, body["term_months"]) - timedelta(days=1),
                    mrr=Decimal(body["mrr"]["amount"]),
                    currency=body["mrr"]["currency"],
                )
                self.active[agreement.id] = agreement
                self.stats.outcomes["contract direct"] += 1
        held = [d for d in self.open_deals.values() if d.status == "approved"]
        deals = []
        for _ in range(max(1, count // 2)):
            if held and self.rng.random() < 0.4:
                other = self.rng.choice(held)
                customer, product_line = other.customer, other.product_line
            else:
                customer, product_line = self.customer(), self.rng.choice(PRODUCT_LINES)
            deals.append(
                {
                    "customer": customer.body(),
                    "product_line": product_line,
                    "owner": self.rng.choice(
                        ["enterprise-east", "enterprise-west", "inside-sales"]
                    ),
                    "external_id": self.next_id("DD"),
                }
            )
        await self.each(
            [
                self.call("registration", "POST", "/v1/direct-deals", json=body, headers=self.crm)
                for body in deals
            ]
        )

    async def poach(self, count: int) -> None:
        """Another partner registers and wins a customer in its incumbent's renewal window."""
        window = [
            c
            for c in self.active.values()
            if c.partner is not None
            and c.motion == "sell"
            and not c.decided
            and c.end - timedelta(days=90) <= self.today < c.end - timedelta(days=14)
        ]
        for contract in self.rng.sample(window, min(count, len(window))):
            rivals = [p for p in self.active_partners("sell") if p is not contract.partner]
            rival = self.rng.choice(rivals)
            body = self.registration_body(rival, contract.customer, "cloud", "sell")
            body["external_id"] = self.next_id("OPP")
            body["estimated_value"]["currency"] = contract.currency
            body["estimated_value"]["amount"] = str(contract.mrr * 12)
            response = await self.call(
                "registration", "POST", "/v1/registrations", json=body, headers=self.crm
            )
            if response.status_code != 201:
                continue
            answer = response.json()
            deal = self.record_deal(body, answer["registration_id"], answer["status"])
            if deal.status != "approved":
                continue
            contract.decided = True  # the incumbent does not renew
            terms = self.contract_terms(contract.currency, contract.mrr * 12)
            terms["start_date"] = (contract.end + timedelta(days=1)).isoformat()
            signed = await self.call(
                "registration",
                "POST",
                "/v1/contracts",
                json={"registration_id": deal.id, "external_id": self.next_id("WON"), **terms},
                headers=self.crm,
            )
            if signed.status_code == 201:
                self.contract_won(
                    deal,
                    signed.json()["contract_id"],
                    contract.end + timedelta(days=1),
                    terms["term_months"],
                    Decimal(terms["mrr"]["amount"]),
                )
                self.stats.outcomes["contract poached"] += 1

    async def renewals(self) -> None:
        """Contracts in their renewal window: most renewed (some for more), a few cancelled at
        the end, the rest left to lapse; and now and then one cancelled early."""
        calls = []
        for contract in list(self.active.values()):
            if contract.end < self.today:
                self.active.pop(contract.id)
                continue
            if contract.decided or self.today < contract.end - timedelta(days=60):
                continue
            contract.decided = True
            roll = self.rng.random()
            if roll < 0.72:
                grow = Decimal(str(self.rng.choice([1, 1, 1.05, 1.1, 1.2, 0.9])))
                mrr = (contract.mrr * grow).quantize(
                    Decimal(1) if contract.currency == "JPY" else Decimal("0.01")
                )
                body: dict[str, Any] = {
                    "term_months": self.rng.choice([12, 12, 12, 24]),
                    "mrr": {"amount": str(mrr), "currency": contract.currency},
                }
                calls.append((contract, "renewal", body))
            elif roll < 0.8:
                body = {"effective_on": contract.end.isoformat(), "reason": "not renewed"}
                calls.append((contract, "cancellation", body))
        for contract in list(self.active.values()):
            started = (self.today - contract.start).days
            if started >= 0 and not contract.decided and self.rng.random() < 0.004:
                contract.decided = True
                body = {"effective_on": self.today.isoformat(), "reason": "the customer churned"}
                calls.append((contract, "cancellation", body))
        responses = await self.each(
            [
                self.call(
                    "registration",
                    "POST",
                    f"/v1/contracts/{contract.id}/{action}",
                    json=body,
                    headers=self.crm,
                )
                for contract, action, body in calls
            ]
        )
        for (contract, action, body), response in zip(calls, responses, strict=True):
            if response.status_code != 200:
                continue
            self.stats.outcomes[f"contract {action}"] += 1
            if action == "renewal":
                contract.decided = False
                contract.end = date.fromisoformat(response.json()["end_date"])
                contract.mrr = Decimal(body["mrr"]["amount"])
            else:
                self.active.pop(contract.id, None)

    # --- the premium associate ----------------------------------------------------------------
    async def referral_track_record(self) -> Partner | None:
        """A referral partner wins five referrals, then elects premium associate: its later
        referrals earn 3 % of MRR monthly instead of the referral fee."""
        referrers = [p for p in self.active_partners() if p.kind == "referrer"]
        if not referrers:
            return None
        partner = max(referrers, key=lambda p: p.weight)
        partner.weight = max(partner.weight, 4.0)
        rows = [
            self.registration_body(
                partner,
                self.customer(partner.country),
                "cloud",
                "refer",
                external_id=self.next_id("OPP"),
            )
            for _ in range(5)
        ]
        await self.import_rows(rows, as_csv=False)
        deals = [d for d in self.deals[-5:] if d.partner is partner and d.status == "approved"]
        bodies = [
            {
                "registration_id": d.id,
                "external_id": self.next_id("WON"),
                **self.contract_terms(d.currency, d.value),
            }
            for d in deals
        ]
        for deal, body in zip(deals, bodies, strict=True):
            response = await self.call(
                "registration", "POST", "/v1/contracts", json=body, headers=self.crm
            )
            if response.status_code == 201:
                self.contract_won(
                    deal,
                    response.json()["contract_id"],
                    date.fromisoformat(body["start_date"]),
                    body["term_months"],
                    Decimal(body["mrr"]["amount"]),
                )
        await self.caught_up()
        await self.call(
            "commissions",
            "POST",
            f"/v1/partners/{partner.id}/premium-associate",
            headers=self.partner_token(partner),
        )
        return partner

    # --- time -------------------------------------------------------------------------------
    async def week(self, index: int, week: int) -> None:
        weekly = self.plan.registrations
        count = max(1, round(weekly * self.rng.uniform(0.7, 1.3) * (1 + index / 24)))
        await self.import_rows(self.week_rows(count), as_csv=week % 2 == 1)
        await self.single_registrations(max(1, count // 20))
        await self.review()
        await self.conflicts_resolved()
        await self.partners_close()
        await self.win_deals()
        await self.renewals()
        if week == 1:
            await self.vendor_deals(max(1, count // 25))
            await self.poach(max(1, count // 60))
        if week == 2 and index % 3 == 0:
            await self.rerun_import()

    async def month(self, index: int, first: date) -> None:
        """Month ``index`` (1 is the first): time runs to its first day, then a month of work,
        week by week. Registration's and commissions' clocks also run each week: a contract's
        months begin on the day of the month it started, so each run pays about a quarter of
        them, as the clock worker would (a large save can hang: BENCHMARKS.md)."""
        for service in ("registration", "tiering"):
            await self.run_clock(service, at(first))
        await self.caught_up()
        await self.run_clock("commissions", at(first))
        self.today = first
        await self.publish_rates(first)
        if self.plan.new_partners:
            await self.enrol(self.rng.randint(0, 2 * self.plan.new_partners))
        await self.membership_changes(index)
        await self.achievements(first, index)
        if index == 8:  # from the next quarter (for the default start)
            await self.adopt_policy(effective_on=month_start(first, 3))
        for week in range(4):
            self.today = first + timedelta(days=7 * week)
            if week:
                await self.run_clock("registration", at(self.today, 9))
                await self.run_clock("commissions", at(self.today, 9))
            self.expire()
            await self.week(index, week)
            await self.caught_up(["registration"])

    async def setup(self) -> None:
        """Before time runs (the services' time is the wall clock's): the program's first
        partners, this month's rates, the referral partner's track record and its election.
        The requests' dates are the history's, so that a seed gives the same requests."""
        await self.enrol(self.plan.partners)
        for kind in ("referrer", "services", "msp", "isv"):  # at least one of each
            if not any(p.kind == kind for p in self.partners):
                await self.enrol(1, kind)
        await self.publish_rates(month_start(self.today, -1))
        await self.referral_track_record()


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def csv_registrations(rows: list[dict[str, Any]]) -> str:
    return csv_text(
        [
            {
                "partner_id": r["partner_id"],
                "customer_name": r["customer"]["name"],
                "customer_country": r["customer"]["country"],
                "customer_domain": r["customer"]["domain"] or "",
                "customer_email": "",
                "product_line": r["product_line"],
                "motion": r["motion"],
                "estimated_amount": r["estimated_value"]["amount"],
                "currency": r["estimated_value"]["currency"],
                "expected_close": r["expected_close"],
                "external_id": r["external_id"],
            }
            for r in rows
        ]
    )


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time of a process so far (user and system; Linux), or of the whole machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        if pid is None:
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            return (sum(values) - values[3] - values[4]) / ticks  # all but idle and iowait
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU time of an embedded server so far: its postmaster with the backends it reaped, and
    the backends still running (Linux)."""
    ticks, postmaster, total = os.sysconf("SC_CLK_TCK"), None, 0.0
    stats = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(proc.name)] = fields
            if postmaster is None and f"{data_dir}/pgdata" in (proc / "cmdline").read_text():
                postmaster = int(proc.name)
        except (OSError, IndexError):
            continue
    for pid, fields in stats.items():
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / ticks
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def count_events(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {
            name: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"{name}_events"))
            ).fetchone()[0]  # type: ignore[index]
            for name in SERVICES
        }


@dataclass
class Result:
    events: dict[str, int]
    """Per log, counted in the tables at the end."""
    months: int
    stats: Stats
    peak_connections: int


async def generate(
    urls: dict[str, str],
    database_url: str,
    events: int,
    *,
    seed: int,
    start: date,
    secret: str = SECRET,
    in_flight: int = IN_FLIGHT,
) -> Result:
    """Drive the services at ``urls`` month by month from ``start`` until their logs hold
    ``events`` events together; then run time to the next month's first day."""
    plan = Plan.for_events(events)
    started = time.perf_counter()
    peak = asyncio.create_task(peak_connections(database_url))
    history = History(urls, plan, seed=seed, start=start, secret=secret, in_flight=in_flight)
    async with history:
        await history.setup()
        index, first = 0, start
        print("Progress: each log's last position (a rolled-back save leaves a gap in them).")
        print("| month | registration | tiering | commissions | total | s | events/s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        while True:
            index += 1
            await history.month(index, first)
            heads = await history.heads()
            total = sum(heads.values())
            elapsed = time.perf_counter() - started
            print(
                f"| {first:%Y-%m} | {heads['registration']:,} | {heads['tiering']:,}"
                f" | {heads['commissions']:,} | {total:,} | {elapsed:.0f}"
                f" | {total / elapsed:.0f} |",
                flush=True,
            )
            first = month_start(first, 1)
            if total >= events or index >= MAX_MONTHS:
                break
        # time runs to the first day of the next month: the last month's statements issue
        for service in ("registration", "tiering"):
            await history.run_clock(service, at(first))
        await history.caught_up()
        await history.run_clock("commissions", at(first))
        await history.caught_up()
    peak.cancel()
    return Result(count_events(database_url), index, history.stats, await peak)


async def peak_connections(database_url: str) -> int:
    """The most connections to the database seen, sampled each second until cancelled."""
    peak = 0

    def sample() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchone()
        return int(row[0]) if row else 0

    try:
        while True:
            with contextlib.suppress(psycopg.OperationalError):  # the server is full
                peak = max(peak, await asyncio.to_thread(sample))
            await asyncio.sleep(1)
    except asyncio.CancelledError:
        return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=IN_FLIGHT,
        help="requests sent at once where their order does not matter",
    )
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=month_start(datetime.now(UTC).date(), 1),
        help="the first day of the history's first month (default: next month's)",
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--keep", action="store_true", help="keep the database; print its URL")
    args = parser.parse_args()
    start: date = month_start(args.start)
    if at(start) <= datetime.now(UTC):
        parser.error("--start must be in the future: a service's time never runs behind the wall")
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    logs = Path(tempfile.mkdtemp(prefix="dealreg-history-logs-"))
    data_dir = None if args.database_url else Path(tempfile.mkdtemp(prefix="dealreg-history-"))
    if args.database_url:
        with psycopg.connect(args.database_url) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
        if row and int(row[0]) < MAX_CONNECTIONS:
            print(
                f"# warning: the server allows {row[0]} connections; under load the three"
                f" services may need more than 100 (the embedded server gets {MAX_CONNECTIONS})"
            )
    with bench_database(
        args.database_url, keep=args.keep, max_connections=MAX_CONNECTIONS, data_dir=data_dir
    ) as url:
        services = {
            name: Service(name, url, free_port(), logs / f"{name}.log") for name in SERVICES
        }
        started, machine = time.perf_counter(), cpu_seconds()
        postgres = postgres_cpu_seconds(data_dir) if data_dir else 0.0
        try:
            for service in services.values():
                service.start(timeout=120)
            result = asyncio.run(
                generate(
                    {name: s.url for name, s in services.items()},
                    url,
                    args.events,
                    seed=args.seed,
                    start=start,
                    in_flight=args.in_flight,
                )
            )
            cpu = {
                name: cpu_seconds(s.process.pid) if s.process else 0.0
                for name, s in services.items()
            }
            cpu["generator"] = time.process_time()
            if data_dir:
                cpu["postgres"] = postgres_cpu_seconds(data_dir) - postgres
            cpu["machine"] = cpu_seconds() - machine
        finally:
            for name, service in services.items():
                if service.process is not None and service.process.poll() is not None:
                    print(f"# {name} had exited ({service.process.returncode}); see {service.log}")
                service.stop()
        report(result, time.perf_counter() - started, cpu)
    if args.keep and data_dir is not None:
        print(f"\nkept: the server's data in {data_dir}; for example (an embedded server)")
        print(f"  DEALREG_DATA_DIR={data_dir} .venv/bin/dealreg audit replay")
    elif args.keep:
        print(f"\nkept: DATABASE_URL={as_url(url)}; for example")
        print(f"  DATABASE_URL={as_url(url)} .venv/bin/dealreg audit replay")
    elif data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"(service logs in {logs})")


def report(result: Result, elapsed: float, cpu: dict[str, float]) -> None:
    counts, stats = result.events, result.stats
    total = sum(counts.values())
    print(f"\n{result.months} months, {sum(stats.requests.values()):,} requests\n")
    print("| log | events |")
    print("|---|---:|")
    for name in SERVICES:
        print(f"| {name} | {counts[name]:,} |")
    print(f"| **total** | **{total:,}** |")
    print(f"\n{elapsed:.0f} s, {total / elapsed:.0f} events/s (services' start included)")
    others = cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine")
    postgres = f" PostgreSQL {cpu['postgres']:.0f}," if "postgres" in cpu else ""
    print(
        f"CPU seconds: registration {cpu['registration']:.0f}, tiering {cpu['tiering']:.0f},"
        f" commissions {cpu['commissions']:.0f}, generator {cpu['generator']:.0f},{postgres}"
        f" the rest of the machine {others:.0f};"
        f" the machine's {os.cpu_count()} cores were {cpu['machine'] / elapsed * 100:.0f} % busy"
        f" (of {100 * (os.cpu_count() or 1)} %); at most {result.peak_connections}"
        " connections to the database"
    )
    print("\nOutcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats.outcomes.items())))
    print("\nWhere the time went (seconds, requests in flight at once summed):")
    for what, seconds in sorted(stats.seconds.items(), key=lambda i: -i[1])[:14]:
        print(f"  {seconds:8.1f}  {what} ({stats.requests.get(what, 0):,})")
    if stats.surprises:
        print(f"\n{len(stats.surprises)} unexpected answers; the first ones:")
        for note in stats.surprises[:10]:
            print(f"  {note}")


if __name__ == "__main__":
    main()
