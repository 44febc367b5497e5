"""``Idempotency-Key`` on every write: a CRM that retries gets the first answer again.

The same key with the same request replays the stored response; the same key with another
request is a 422; a key whose first request is still running is a 409. Keys belong to the
token's subject and are kept for 24 hours. Server errors are not stored, so they can be retried.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import jwt
import psycopg
from psycopg import sql
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.database import creating_tables

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255


def table_name(service: str) -> str:
    return f"{service}_idempotency_keys"


def ensure_table(database_url: str, schema: str, service: str) -> None:
    with creating_tables(database_url), psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " subject text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,"
                " status integer, content_type text, body bytea,"
                " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (subject, key))"
            ).format(sql.Identifier(schema), sql.Identifier(table_name(service)))
        )


def _subject(headers: dict[bytes, bytes]) -> str:
    """Whose key it is. The token is verified by the route; an unverifiable one gets a 401
    that is never stored, so reading the claim unverified here is safe."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if not authorization.lower().startswith("bearer "):
        return "anonymous"
    try:
        claims = jwt.decode(authorization[7:], options={"verify_signature": False})
    except jwt.PyJWTError:
        return "anonymous"
    return str(claims.get("sub", "anonymous"))


def _problem(status: int, kind: str, detail: str, path: str) -> tuple[int, bytes]:
    body = {
        "type": f"/problems/{kind}",
        "title": "Idempotency",
        "status": status,
        "detail": detail,
        "instance": path,
    }
    return status, json.dumps(body).encode()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, service: str, schema: str) -> None:
        self.app = app
        self.table = f'"{schema}"."{table_name(service)}"'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key = headers.get(HEADER, b"").decode("latin-1").strip()
        if not key:
            await self.app(scope, receive, send)
            return
        if len(key) > MAX_KEY_LENGTH:
            await self._send(
                send,
                *_problem(
                    400,
                    "bad-idempotency-key",
                    f"An Idempotency-Key is at most {MAX_KEY_LENGTH} characters.",
                    scope["path"],
                ),
            )
            return
        body, more = await _read_body(receive)
        fingerprint = hashlib.sha256(
            b"\0".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode(),
                    scope.get("query_string", b""),
                    body,
                ]
            )
        ).hexdigest()
        subject = _subject(headers)
        pool = scope["app"].state.pool
        claimed = await pool.fetchval(
            f"INSERT INTO {self.table} (subject, key, fingerprint) VALUES ($1, $2, $3)"  # noqa: S608
            " ON CONFLICT DO NOTHING RETURNING 1",
            subject,
            key,
            fingerprint,
        )
        if not claimed:
            await self._answer_again(send, pool, subject, key, fingerprint, scope["path"])
            return
        if random.random() < 0.01:  # noqa: S311 - housekeeping, now and then
            await pool.execute(
                f"DELETE FROM {self.table} WHERE created_at < now() - interval '24 hours'"  # noqa: S608
            )
        await self._first_time(scope, _replaying(body, more, receive), send, pool, subject, key)

    async def _first_time(
        self, scope: Scope, receive: Receive, send: Send, pool: Any, subject: str, key: str
    ) -> None:
        status = 500
        content_type = "application/json"
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"idempotency-key", key.encode("latin-1")),
                    ],
                }
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if status >= 500 or status in (401, 403):
                await pool.execute(
                    f"DELETE FROM {self.table} WHERE subject = $1 AND key = $2",  # noqa: S608
                    subject,
                    key,
                )
            else:
                await pool.execute(
                    f"UPDATE {self.table} SET status = $3, content_type = $4, body = $5"  # noqa: S608
                    " WHERE subject = $1 AND key = $2",
                    subject,
                    key,
                    status,
                    content_type,
                    b"".join(chunks),
                )

    async def _answer_again(
        self, send: Send, pool: Any, subject: str, key: str, fingerprint: str, path: str
    ) -> None:
        row = await pool.fetchrow(
            f"SELECT fingerprint, status, content_type, body FROM {self.table}"  # noqa: S608
            " WHERE subject = $1 AND key = $2",
            subject,
            key,
        )
        if row is None:  # expired between the two statements: let the client retry
            await self._send(
                send,
                *_problem(409, "request-in-progress", "Retry this request.", path),
                retry_after=True,
            )
        elif row["fingerprint"] != fingerprint:
            await self._send(
                send,
                *_problem(
                    422,
                    "idempotency-key-reused",
                    "This Idempotency-Key was used for a different request; use a new key.",
                    path,
                ),
            )
        elif row["status"] is None:
            await self._send(
                send,
                *_problem(
                    409,
                    "request-in-progress",
                    "The first request with this Idempotency-Key is still running.",
                    path,
                ),
                retry_after=True,
            )
        else:
            await self._send(
                send, row["status"], bytes(row["body"]), row["content_type"], replayed=True, key=key
            )

    @staticmethod
    async def _send(
        send: Send,
        status: int,
        body: bytes,
        content_type: str = "application/problem+json",
        *,
        retry_after: bool = False,
        replayed: bool = False,
        key: str = "",
    ) -> None:
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ]
        if retry_after:
            headers.append((b"retry-after", b"1"))
        if replayed:
            headers += [
                (b"idempotent-replayed", b"true"),
                (b"idempotency-key", key.encode("latin-1")),
            ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replaying(body: bytes, rest: list[Message], receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if rest:
            return rest.pop(0)
        return await receive()

    return replay
