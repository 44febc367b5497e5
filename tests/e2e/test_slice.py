"""The walking skeleton's slice, over HTTP, through three real processes."""

from __future__ import annotations

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, eventually, registration_body
from tests.e2e.conftest import Stack


def test_enrol_register_sign_and_every_service_reacts(stack: Stack) -> None:
    admin, crm = bearer(Role.ADMIN), bearer(Role.CRM)
    with (
        stack.client("tiering") as tiering,
        stack.client("registration") as registration,
        stack.client("commissions") as commissions,
    ):
        enrolled = tiering.post("/v1/partners", json=PARTNER_BODY, headers=admin)
        assert enrolled.status_code == 201, enrolled.text
        partner_id = enrolled.json()["partner_id"]

        # registration accepts the deals of a partner enrolled at tiering
        registered = registration.post(
            "/v1/registrations", json=registration_body(partner_id), headers=crm
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["status"] == "approved"
        # what serves it is not told (OWASP API8)
        assert "server" not in registered.headers
        assert registered.headers["x-content-type-options"] == "nosniff"

        # tiering counts the deal registered at registration
        standing = eventually(
            lambda: (
                (s := tiering.get(f"/v1/partners/{partner_id}", headers=admin).json())[
                    "registrations"
                ]
                == 1
                and s
            )
        )
        assert standing["tiers"] == {"refer": "associate", "sell": "registered"}

        # commissions pays the new-business bonus on the contract signed at registration (its
        # months earn as the clock reaches them)
        contract = registration.post(
            "/v1/contracts",
            json={
                "registration_id": registered.json()["registration_id"],
                "start_date": "2027-01-01",
                "mrr": {"amount": "3000.00", "currency": "USD"},
            },
            headers=crm,
        ).json()
        lines = eventually(
            lambda: commissions.get(
                "/v1/ledger", params={"partner_id": partner_id}, headers=bearer(Role.FINANCE)
            ).json()["lines"]
        )
        (line,) = lines
        assert line["contract_id"] == contract["contract_id"]
        assert line["rule"] == "new_business_bonus"
        assert line["amount"] == {"amount": "1800.00", "currency": "USD"}  # 5% of 36,000.00
        assert line["caused_by"]
        assert line["caused_by"][0].startswith("registration#")

        # the contract (36,000 in its first year) promotes the partner at tiering from its start
        # (when tiering's clock reaches it), and commissions follows tiering
        ran = tiering.post("/v1/admin/clock", json={"until": "2027-01-01T00:00:00Z"}, headers=admin)
        assert ran.status_code == 200, ran.text
        promoted = eventually(
            lambda: (
                (s := tiering.get(f"/v1/partners/{partner_id}", headers=admin).json())["tiers"][
                    "sell"
                ]
                == "certified"
                and s
            )
        )
        (sell,) = [m for m in promoted["standing"] if m["motion"] == "sell"]
        assert sell["metrics"]["first_year_value"] == "36000.00"

        def commissions_tiers() -> dict[str, str]:
            tiers = commissions.get(f"/v1/partner-tiers/{partner_id}", headers=admin).json()
            return {t["motion"]: t["tier"] for t in tiers["tiers"]}

        assert eventually(
            lambda: commissions_tiers() == {"refer": "associate", "sell": "certified"}
        )

        # the auditor reads each log in order
        for client in (tiering, registration, commissions):
            page = client.get("/v1/events", headers=bearer(Role.AUDITOR)).json()
            positions = [e["position"] for e in page["events"]]
            assert positions == sorted(positions)
            assert positions[0] == 1
            assert page["head"] >= positions[-1]

        # lag is measured per subscription
        metrics = commissions.get("/metrics").text
        assert 'subscription="commissions<-registration"' in metrics
