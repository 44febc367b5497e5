"""What each service process holds of the database at rest (issue 21, decision 19)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import psycopg

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, eventually, registration_body
from tests.e2e.conftest import SERVICES, running_stack

AT_REST = 8
"""The most connections a service process may hold while nothing happens."""


def connections(database_url: str, since: datetime) -> dict[str, int]:
    """Connections to the database opened since an instant, by ``application_name`` (the
    services name theirs ``dealreg-<service>``)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_start >= %s"
            " GROUP BY application_name",
            (since,),
        ).fetchall()
    return {str(name): int(n) for name, n in rows}


def test_each_service_process_holds_at_most_eight_connections_at_rest(
    database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    with running_stack(database_url, tmp_path) as stack:
        with stack.client("tiering") as tiering, stack.client("registration") as registration:
            partner_id = tiering.post(
                "/v1/partners", json=PARTNER_BODY, headers=bearer(Role.ADMIN)
            ).json()["partner_id"]
            # accepted once registration has learned of the partner from tiering's log
            eventually(
                lambda: (
                    registration.post(
                        "/v1/registrations",
                        json=registration_body(partner_id),
                        headers=bearer(Role.CRM),
                    ).status_code
                    == 201
                )
            )
        held = connections(database_url, since=row[0])
    for service in SERVICES:
        assert 0 < held.get(f"dealreg-{service}", 0) <= AT_REST, held
