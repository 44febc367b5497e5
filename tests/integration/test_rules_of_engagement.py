"""DOMAIN.md, "Deal registration — rules of engagement": a test per numbered rule, over HTTP
against a real PostgreSQL, with time moved by the clock (never by sleeping)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients

CRM, MANAGER, ADMIN = bearer(Role.CRM), bearer(Role.CHANNEL_MANAGER), bearer(Role.ADMIN)


def register(
    clients: Clients, partner: str | None, headers: dict[str, str] = CRM, **overrides: Any
) -> dict[str, Any]:
    body = {**registration_body(partner), **overrides}
    response = clients.registration.post("/v1/registrations", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def customer(domain: str, name: str = "Acme Ltd", country: str = "GB") -> dict[str, Any]:
    return {"name": name, "country": country, "domain": domain}


def run_clock(clients: Clients, until: str) -> dict[str, Any]:
    response = clients.registration.post("/v1/admin/clock", json={"until": until}, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def events_of(clients: Clients, kind: str) -> list[dict[str, Any]]:
    events = clients.registration.get(
        "/v1/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR)
    ).json()["events"]
    return [e for e in events if e["type"].endswith(kind)]


def in_deals_view(clients: Clients, registration_id: str) -> None:
    eventually(
        lambda: (
            clients.registration.get(
                "/v1/registrations", params={"limit": 500}, headers=CRM
            ).json()["registrations"]
            and any(
                r["registration_id"] == registration_id
                for r in clients.registration.get(
                    "/v1/registrations", params={"limit": 500}, headers=CRM
                ).json()["registrations"]
            )
        )
    )


def sign(clients: Clients, **body: Any) -> dict[str, Any]:
    payload = {"start_date": "2027-01-01", "mrr": {"amount": "1000.00", "currency": "USD"}, **body}
    response = clients.registration.post("/v1/contracts", json=payload, headers=CRM)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_rule_1_a_registration_names_partner_customer_product_motion_value_close_and_crm_id(
    clients: Clients,
) -> None:
    partner = clients.enrol()
    recorded = register(clients, partner, external_id="SF-006000001")
    assert recorded["partner_id"] == partner
    assert recorded["customer_key"] == "domain:acme.co.uk"
    assert (recorded["product_line"], recorded["motion"]) == ("cloud", "sell")
    assert recorded["estimated_value"] == {"amount": "12000.00", "currency": "USD"}
    assert recorded["expected_close"] == "2027-03-31"
    found = clients.registration.get(
        "/v1/registrations/by-external-id/SF-006000001", headers=CRM
    ).json()
    assert found["registration_id"] == recorded["registration_id"]
    again = clients.registration.post(
        "/v1/registrations",
        json={
            **registration_body(partner),
            "customer": customer("globex.com"),
            "external_id": "SF-006000001",
        },
        headers=CRM,
    )
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/external-id-taken"
    for broken in (
        {"motion": "resell"},
        {"estimated_value": {"amount": "12.5", "currency": "dollars"}},
        {"estimated_value": {"amount": "-1", "currency": "USD"}},
        {"customer": {"name": "Acme", "country": "Britain"}},
        {"expected_close": "someday"},
        {"product_line": ""},
    ):
        response = clients.registration.post(
            "/v1/registrations", json={**registration_body(partner), **broken}, headers=CRM
        )
        assert response.status_code == 422, broken
        assert response.headers["content-type"] == "application/problem+json"


def test_rule_2_first_to_register_wins_ninety_days_and_two_approved_extensions(
    clients: Clients,
) -> None:
    partner = clients.enrol()
    run_clock(clients, "2027-01-04T09:00:00Z")
    first = register(clients, partner)
    approved_on = date(2027, 1, 4)
    assert first["status"] == "approved"
    assert first["protected_until"] == (approved_on + timedelta(days=90)).isoformat()
    me = bearer(Role.PARTNER, UUID(partner))
    path = f"/v1/registrations/{first['registration_id']}"
    for extension in (1, 2):
        asked = clients.registration.post(
            f"{path}/extension-request", json={"note": "slipped"}, headers=me
        )
        assert asked.json()["extension_requested"]
        twice = clients.registration.post(f"{path}/extension-request", json={}, headers=me)
        assert twice.status_code == 409
        granted = clients.registration.post(f"{path}/extension-approval", headers=MANAGER).json()
        assert granted["extensions"] == extension
        assert (
            granted["protected_until"]
            == (approved_on + timedelta(days=90 + 30 * extension)).isoformat()
        )
    third = clients.registration.post(f"{path}/extension-request", json={}, headers=me)
    assert third.status_code == 409  # the registration as it stands has had its two
    assert "at most 2" in third.json()["detail"]
    partner_cannot_approve = clients.registration.post(f"{path}/extension-approval", headers=me)
    assert partner_cannot_approve.status_code == 403


def test_a_customer_is_known_by_its_domain_and_by_its_name_and_either_is_protected(
    clients: Clients,
) -> None:
    """DOMAIN.md, "Customers and identity": a registration giving a domain and a name is known by
    both keys; another that shares either is the same customer, so a conflict while protected."""
    holder, rival = clients.enrol(), clients.enrol(legal_name="Contoso")
    first = register(clients, holder, customer=customer("acme.co.uk", "ACME Corporation Ltd"))
    assert first["status"] == "approved"
    as_rival = bearer(Role.PARTNER, UUID(rival))
    by_name = {"name": "Acme Corp.", "country": "GB"}
    named = register(clients, rival, headers=as_rival, customer=by_name)
    assert named["status"] == "conflict"
    elsewhere = register(clients, rival, headers=as_rival, customer=customer("acme-uk.com", "Acme"))
    assert elsewhere["status"] == "conflict"
    other_line = register(clients, rival, headers=as_rival, customer=by_name, product_line="edge")
    assert other_line["status"] == "approved"  # a claim is per product line
    # the holder's deal won: both keys are free at once
    clients.sign(start=date(2027, 1, 1), mrr="100", registration_id=first["registration_id"])
    again = register(clients, rival, headers=as_rival, customer=customer("acme.co.uk", "Acme"))
    assert again["status"] != "conflict"  # (in review: the rival's own earlier ones resemble it)
    assert all(flag["rule"] != "first-to-register" for flag in again["flags"])


def test_rule_3_a_conflict_is_recorded_never_approved_while_protected_and_hides_the_holder(
    clients: Clients,
) -> None:
    holder, other = clients.enrol(), clients.enrol(legal_name="Contoso")
    first = register(clients, holder)
    as_other = bearer(Role.PARTNER, UUID(other))
    second = register(clients, other, headers=as_other, customer=customer("bob@sales.acme.co.uk"))
    assert second["status"] == "conflict"
    assert second["flags"] == [
        {
            "rule": "first-to-register",
            "collides_with": None,
            "matched_keys": None,
            "score": None,
            "detail": None,
            "others": None,
        }
    ]
    assert date.fromisoformat(second["may_register_again_on"]) == date.fromisoformat(
        first["protected_until"]
    ) + timedelta(days=1)
    assert first["registration_id"] not in str(second)
    staff_view = clients.registration.get(
        f"/v1/registrations/{second['registration_id']}", headers=MANAGER
    ).json()
    assert staff_view["flags"][0]["collides_with"] == f"registration:{first['registration_id']}"
    assert staff_view["flags"][0]["matched_keys"] == ["customer_key", "product_line"]
    refused = clients.registration.post(
        f"/v1/registrations/{second['registration_id']}/approval", headers=MANAGER
    )
    assert refused.status_code == 409
    assert refused.json()["type"] == "/problems/still-protected"
    own_again = clients.registration.post(
        "/v1/registrations", json=registration_body(holder), headers=CRM
    )
    assert own_again.status_code == 409
    # once the holder withdraws, the conflicting registration can be approved
    clients.registration.post(
        f"/v1/registrations/{first['registration_id']}/withdrawal",
        json={"reason": "customer paused"},
        headers=CRM,
    )
    approved = clients.registration.post(
        f"/v1/registrations/{second['registration_id']}/approval", headers=MANAGER
    ).json()
    assert approved["status"] == "approved"


def test_rule_4_auto_approval_review_queue_decisions_resubmission_and_review_overdue(
    clients: Clients,
) -> None:
    partner, rival = clients.enrol(), clients.enrol(legal_name="Contoso")
    run_clock(clients, "2027-01-06T10:00:00Z")  # a Wednesday
    clean = register(clients, partner, customer=customer("acme.com", "Acme Corp", "US"))
    assert clean["status"] == "approved"
    in_deals_view(clients, clean["registration_id"])
    near = register(clients, rival, customer=customer("acmee.com", "Acme Systems", "US"))
    assert near["status"] == "pending_review"
    flag = near["flags"][0]
    assert flag["rule"] == "possible-duplicate"
    assert flag["collides_with"] == f"registration:{clean['registration_id']}"
    assert float(flag["score"]) >= 0.85
    assert set(flag["matched_keys"]) & {"name", "domain"}
    assert near["review_due_at"].startswith("2027-01-08T10:00:00")  # two business days

    queue = eventually(
        lambda: clients.registration.get(
            "/v1/review-queue", params={"reason": "possible-duplicate"}, headers=MANAGER
        ).json()["items"]
    )
    assert [item["registration_id"] for item in queue] == [near["registration_id"]]
    assert queue[0]["explanation"][0]["score"] is not None
    assert clients.registration.get("/v1/review-queue", headers=CRM).status_code == 403

    assert run_clock(clients, "2027-01-08T09:59:00Z")["decisions"] == 0
    assert run_clock(clients, "2027-01-08T10:00:00Z")["decisions"] == 1
    assert len(events_of(clients, "Registration.ReviewOverdue")) == 1
    overdue = clients.registration.get(
        "/v1/review-queue", params={"overdue": "true"}, headers=MANAGER
    ).json()["items"]
    eventually(
        lambda: clients.registration.get(
            "/v1/review-queue", params={"overdue": "true"}, headers=MANAGER
        ).json()["items"]
    )
    assert overdue is not None

    path = f"/v1/registrations/{near['registration_id']}"
    no_reason = clients.registration.post(f"{path}/rejection", json={}, headers=MANAGER)
    assert no_reason.status_code == 422
    returned = clients.registration.post(
        f"{path}/return", json={"note": "which Acme is this?"}, headers=MANAGER
    )
    assert returned.json()["status"] == "returned"
    resubmitted = clients.registration.post(
        f"{path}/resubmission",
        json={
            "customer": customer("initech.com", "Initech", "US"),
            "product_line": "cloud",
            "estimated_value": {"amount": "5000", "currency": "USD"},
            "expected_close": "2027-06-30",
        },
        headers=bearer(Role.PARTNER, UUID(rival)),
    ).json()
    assert resubmitted["status"] == "approved"
    assert resubmitted["customer_key"] == "domain:initech.com"

    other = register(clients, rival, customer=customer("acme.co.uk", "Acme Widgets", "US"))
    assert other["status"] == "pending_review"
    rejected = clients.registration.post(
        f"/v1/registrations/{other['registration_id']}/rejection",
        json={"reason_code": "duplicate", "note": "same as Acme Corp"},
        headers=MANAGER,
    ).json()
    assert rejected["status"] == "rejected"


def test_rule_5_protection_expires_at_its_end_by_the_clock_never_by_a_read(
    clients: Clients,
) -> None:
    holder, next_partner = clients.enrol(), clients.enrol(legal_name="Contoso")
    run_clock(clients, "2027-01-04T09:00:00Z")
    first = register(clients, holder)
    last_day = first["protected_until"]
    run_clock(clients, f"{last_day}T23:59:59Z")
    assert (
        clients.registration.get(
            f"/v1/registrations/{first['registration_id']}", headers=CRM
        ).json()["status"]
        == "approved"
    )
    expiry = (date.fromisoformat(last_day) + timedelta(days=1)).isoformat()
    assert run_clock(clients, f"{expiry}T00:00:00Z")["decisions"] >= 1
    assert run_clock(clients, f"{expiry}T00:00:00Z")["decisions"] == 0  # twice: once
    assert (
        clients.registration.get(
            f"/v1/registrations/{first['registration_id']}", headers=CRM
        ).json()["status"]
        == "expired"
    )
    assert len(events_of(clients, "Registration.Expired")) == 1
    successor = register(clients, next_partner)
    assert successor["status"] == "approved"
    # a won deal does not expire
    won = register(clients, holder, customer=customer("globex.com"))
    sign(clients, registration_id=won["registration_id"])
    run_clock(clients, "2028-01-01T00:00:00Z")
    assert (
        clients.registration.get(f"/v1/registrations/{won['registration_id']}", headers=CRM).json()[
            "status"
        ]
        == "won"
    )


def test_rule_6_a_registration_in_the_incumbents_renewal_window_is_poaching(
    clients: Clients,
) -> None:
    incumbent, challenger = clients.enrol(), clients.enrol(legal_name="Contoso")
    run_clock(clients, "2026-01-01T00:00:00Z")
    original = register(clients, incumbent, customer=customer("hooli.com", "Hooli", "US"))
    contract = sign(clients, registration_id=original["registration_id"], start_date="2026-01-01")
    assert contract["renewal_due_on"] == "2026-10-02"
    eventually(
        lambda: (
            clients.registration.get(
                f"/v1/contracts/{contract['contract_id']}", headers=CRM
            ).status_code
            == 200
        )
    )
    run_clock(clients, "2026-10-05T00:00:00Z")
    assert len(events_of(clients, "RenewalDue")) == 1
    poaching = register(clients, challenger, customer=customer("hooli.com", "Hooli", "US"))
    assert poaching["status"] == "approved"  # not blocked: the customer chooses
    assert [f["rule"] for f in poaching["flags"]] == ["poaching"]
    (notice,) = events_of(clients, "Registration.IncumbentNotified")
    assert notice["data"]["incumbent_partner_id"] == incumbent
    won = sign(clients, registration_id=poaching["registration_id"], start_date="2027-01-01")
    assert won["poached"] is True
    signed = next(
        e for e in events_of(clients, "ContractSigned") if e["stream_id"] == won["contract_id"]
    )
    assert signed["data"]["poached"] is True
    assert signed["data"]["incumbent_partner_id"] == incumbent
    # the incumbent renewing its own customer is no poaching
    renewal = register(
        clients, incumbent, customer=customer("hooli.com", "Hooli", "US"), product_line="security"
    )
    assert renewal["flags"] == []


def test_rule_7_won_on_contract_signed_lost_and_withdrawn_release_at_once(
    clients: Clients,
) -> None:
    partner, other = clients.enrol(), clients.enrol(legal_name="Contoso")
    won = register(clients, partner)
    contract = sign(clients, registration_id=won["registration_id"], external_id="opp-1")
    assert contract["partner_id"] == partner
    assert contract["motion"] == "sell"
    after = clients.registration.get(
        f"/v1/registrations/{won['registration_id']}", headers=CRM
    ).json()
    assert (after["status"], after["contract_id"]) == ("won", contract["contract_id"])
    again = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": won["registration_id"],
            "start_date": "2027-02-01",
            "mrr": {"amount": "1", "currency": "USD"},
        },
        headers=CRM,
    )
    assert again.status_code == 409

    for close, path in (("lost", "loss"), ("withdrawn", "withdrawal")):
        domain = f"{close}-corp.com"
        held = register(clients, partner, customer=customer(domain, f"{close} Group"))
        blocked = register(clients, other, customer=customer(domain, f"{close} Group"))
        assert blocked["status"] == "conflict"
        closed = clients.registration.post(
            f"/v1/registrations/{held['registration_id']}/{path}",
            json={"reason": "customer chose a competitor"},
            headers=CRM,
        ).json()
        assert closed["status"] == close
        free = register(
            clients,
            other,
            customer=customer(domain, f"{close} Group"),
            product_line="cloud",
            external_id=f"{close}-retry",
        )
        assert free["status"] == "approved"

    referrer = clients.enrol(legal_name="Referral Partners", motions=[])
    referral = register(clients, referrer, motion="refer", customer=customer("initech.com"))
    credited = sign(clients, registration_id=referral["registration_id"])
    assert (credited["partner_id"], credited["motion"]) == (referrer, "refer")


def test_rule_8_a_direct_sales_deal_for_a_protected_customer_is_a_channel_conflict(
    clients: Clients,
) -> None:
    partner = clients.enrol()
    protected = register(clients, partner)
    direct = clients.registration.post(
        "/v1/direct-deals",
        json={
            "customer": customer("www.acme.co.uk"),
            "product_line": "cloud",
            "owner": "Jane (enterprise sales)",
        },
        headers=CRM,
    ).json()
    assert direct["status"] == "channel_conflict"
    assert direct["conflicts_with_registration"] == protected["registration_id"]
    after = clients.registration.get(
        f"/v1/registrations/{protected['registration_id']}", headers=MANAGER
    ).json()
    assert after["status"] == "approved"  # the partner's protection stands
    assert after["protected_until"] == protected["protected_until"]
    unprotected = clients.registration.post(
        "/v1/direct-deals",
        json={
            "customer": customer("globex.com", "Globex"),
            "product_line": "cloud",
            "owner": "Jane",
        },
        headers=CRM,
    ).json()
    assert unprotected["status"] == "recorded"
    queue = eventually(
        lambda: (
            (
                listed := clients.registration.get(
                    "/v1/registrations", params={"partner_id": partner}, headers=MANAGER
                ).json()["registrations"]
            )
            and listed[0]["reasons"]
        )
    )
    assert queue == ["direct-conflict"]


def test_who_may_register(clients: Clients) -> None:
    unknown = clients.registration.post(
        "/v1/registrations",
        json=registration_body("00000000-0000-4000-8000-000000000001"),
        headers=CRM,
    )
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "/problems/partner-not-found"
    referrer = clients.enrol(motions=[])
    resale = clients.registration.post(
        "/v1/registrations", json=registration_body(referrer), headers=CRM
    )
    assert resale.status_code == 422
    assert "sell" in resale.json()["detail"]
    influencer = clients.enrol(function="influencer", category="academia")
    refused = clients.registration.post(
        "/v1/registrations",
        json={**registration_body(influencer), "motion": "refer"},
        headers=CRM,
    )
    assert refused.status_code == 422


def test_a_partner_sees_and_acts_on_its_own_only(clients: Clients) -> None:
    mine, theirs = clients.enrol(), clients.enrol(legal_name="Contoso")
    their_registration = register(clients, theirs, customer=customer("globex.com"))
    me = bearer(Role.PARTNER, UUID(mine))
    path = f"/v1/registrations/{their_registration['registration_id']}"
    assert clients.registration.get(path, headers=me).status_code == 404
    assert clients.registration.post(f"{path}/withdrawal", json={}, headers=me).status_code == 404
    impersonation = clients.registration.post(
        "/v1/registrations",
        json={**registration_body(theirs), "customer": customer("i.com")},
        headers=me,
    )
    assert impersonation.status_code == 403
    register(clients, mine, headers=me, customer=customer("hooli.com"))
    listed = eventually(
        lambda: clients.registration.get("/v1/registrations", headers=me).json()["registrations"]
    )
    assert {r["partner_id"] for r in listed} == {mine}
    assert clients.registration.get("/v1/review-queue", headers=me).status_code == 403


def test_racing_registrations_protect_exactly_one(clients: Clients) -> None:
    partners = [clients.enrol(legal_name=f"Partner {i}") for i in range(12)]

    def attempt(partner: str) -> tuple[int, str]:
        response = clients.registration.post(
            "/v1/registrations",
            json={**registration_body(partner), "customer": customer("race.example.com")},
            headers=CRM,
        )
        return response.status_code, response.json().get("status", "")

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(attempt, partners))
    assert [code for code, _ in results] == [201] * 12
    assert sorted(status for _, status in results).count("approved") == 1


def test_a_registration_that_loses_a_race_is_a_conflict_never_sent_to_review(
    clients: Clients,
) -> None:
    """A registration is decided on the claims it read. Here another partner's registration is
    approved between that read and the save, while the views already showed a near duplicate
    (which alone would send it to review): its save finds the claims moved, and decided again
    it is a conflict, as it would have been had it come a moment later."""
    near, holder, racer = (clients.enrol(legal_name=n) for n in ("Near", "Holder", "Racer"))
    register(clients, near, customer=customer("acmee.co.uk", "Akme Holdings"))
    waiting = register(clients, holder, customer=customer("acme.co.uk", "Acme Corp"))
    assert waiting["status"] == "pending_review"  # it resembles the near duplicate
    clients.settle()
    facts: Any = clients.registration.app.state.runtime.app.facts  # type: ignore[attr-defined]
    similar, approvals = facts.similar, []

    def approved_meanwhile(*args: Any) -> Any:
        if not approvals:  # once, by another request, between this one's reads
            with ThreadPoolExecutor(1) as other:
                approvals.append(
                    other.submit(
                        clients.registration.post,
                        f"/v1/registrations/{waiting['registration_id']}/approval",
                        headers=MANAGER,
                    ).result()
                )
        return similar(*args)

    facts.similar = approved_meanwhile
    try:
        by_name = {"name": "ACME corporation, Ltd.", "country": "GB"}
        lost = register(clients, racer, customer=by_name)
    finally:
        facts.similar = similar
    assert approvals[0].status_code == 200, approvals[0].text
    assert lost["status"] == "conflict"
    assert lost["may_register_again_on"]
    assert lost["flags"][0]["rule"] == "first-to-register"


def test_lists_page_by_opaque_cursor_and_filter_by_crm_id(clients: Clients) -> None:
    partner = clients.enrol()
    for n in range(5):
        register(
            clients,
            partner,
            customer=customer(f"customer{n}.com", f"Customer {n}"),
            external_id=f"o{n}",
        )
    eventually(
        lambda: (
            len(clients.registration.get("/v1/registrations", headers=CRM).json()["registrations"])
            == 5
        )
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = clients.registration.get("/v1/registrations", params=params, headers=CRM).json()
        seen += [r["external_id"] for r in page["registrations"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [f"o{n}" for n in range(5)]
    by_crm_id = clients.registration.get(
        "/v1/registrations", params={"external_id": "o3"}, headers=CRM
    ).json()["registrations"]
    assert [r["external_id"] for r in by_crm_id] == ["o3"]


def test_contracts_renew_and_cancel(clients: Clients) -> None:
    partner = clients.enrol()
    contract = sign(clients, partner_id=partner, customer=customer("globex.com"), external_id="C-1")
    assert (
        clients.registration.get("/v1/contracts/by-external-id/C-1", headers=CRM).json()[
            "contract_id"
        ]
        == contract["contract_id"]
    )
    path = f"/v1/contracts/{contract['contract_id']}"
    renewed = clients.registration.post(
        f"{path}/renewal",
        json={"term_months": 24, "mrr": {"amount": "1200", "currency": "USD"}},
        headers=CRM,
    ).json()
    assert renewed["end_date"] == "2029-12-31"
    assert renewed["renewal_due_on"] == "2029-10-02"
    wrong_currency = clients.registration.post(
        f"{path}/renewal", json={"mrr": {"amount": "1", "currency": "EUR"}}, headers=CRM
    )
    assert wrong_currency.status_code == 409  # the contract's currency is recorded
    cancelled = clients.registration.post(
        f"{path}/cancellation", json={"effective_on": "2027-03-01", "reason": "budget"}, headers=CRM
    ).json()
    assert (cancelled["status"], cancelled["cancelled_on"]) == ("cancelled", "2027-03-01")
    twice = clients.registration.post(
        f"{path}/cancellation", json={"effective_on": "2027-04-01"}, headers=CRM
    )
    assert twice.status_code == 409
