"""The baseline the throughput figures are set against: a bare FastAPI endpoint that validates
the very request body of ``POST /v1/registrations`` (the same pydantic model) and inserts one
row with an asyncpg pool, answering 201. No token check, no domain, no event store: what any
FastAPI + PostgreSQL service pays for one write, on the same machine in the same run.

    DATABASE_URL=postgresql://... python -m bench.baseline PORT

Run under uvicorn, one worker, as the services are (``dealreg serve``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID, uuid4

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel

from services.registration.api.registrations import RegistrationRequest
from shared.database import asyncpg_dsn

TABLE = """CREATE TABLE IF NOT EXISTS baseline_registrations (
    registration_id uuid PRIMARY KEY,
    customer_name text NOT NULL,
    body jsonb NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
)"""


class Created(BaseModel):
    registration_id: UUID
    status: str


def create_app(database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(**asyncpg_dsn(database_url), min_size=1, max_size=10)
        await pool.execute(TABLE)
        app.state.pool = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/registrations", status_code=201, response_model=Created)
    async def register(body: RegistrationRequest, request: Request) -> Created:
        registration_id = uuid4()
        await request.app.state.pool.execute(
            "INSERT INTO baseline_registrations (registration_id, customer_name, body)"
            " VALUES ($1, $2, $3::jsonb)",
            registration_id,
            body.customer.name,
            body.model_dump_json(),
        )
        return Created(registration_id=registration_id, status="registered")

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    port = int(sys.argv[1])
    app = create_app(os.environ["DATABASE_URL"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
