"""Write requests: recorded once their answer is known, and ``Idempotency-Key`` on every one.

Every write request runs with a ``RequestWrites`` in force (``shared.eventlog``): the events it
decides are recorded after the endpoint has answered, in one transaction with the stored answer
(when the request has a key), and not at all when it fails (5xx). Should another writer change
the same aggregates first, the request is run again on what that writer recorded.

A key belongs to the *verified* caller: the store is read only once the route has authenticated
and authorized the request (``shared.auth.Allow`` calls back ``ON_AUTHORIZED``), under the
token's role, partner and subject. The claim on a key is a lease, renewed while the request
runs; when its process dies the lease runs out (``idempotency_lease_seconds``) and a retry
does the work then. The answer and the events commit together, fenced by the claim's owner, so
a crash at any point leaves both or neither, and a key has one effect and one answer.

The same key with the same request replays the stored answer; with another request it is a
422; while the first request runs, a 409. Answers are sealed (Fernet) in the store, so a
rotated webhook secret is never kept there in clear, and kept ``idempotency_retention_hours``.
Server errors, 401 and 403 are not stored, so they can be retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from cryptography.fernet import Fernet, InvalidToken
from eventsourcing.persistence import IntegrityError
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.routing import RouteContext, iter_route_contexts
from psycopg import sql
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import ON_AUTHORIZED, VERIFIED, Principal, bearer_token, verified
from shared.database import Database
from shared.edge import ROUTE_BODY_LIMIT
from shared.eventlog import RequestWrites, ServiceApplication, collecting
from shared.problems import Problem, answer_to
from shared.settings import ServiceSettings

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255
KEY_PATTERN = re.compile(f"[!-~]{{1,{MAX_KEY_LENGTH}}}")
ATTEMPTS = 5
"""Runs of a request whose writes met another writer's, before it is answered 409."""

OnAuthorized = Callable[[Principal], Awaitable[None]]


def table_name(service: str) -> str:
    return f"{service}_idempotency"


def ensure_table(database: Database, service: str) -> None:
    schema = database.schema
    with database.creating_tables() as conn:
        # The former store keyed answers on a token's unverified subject: not to be replayed.
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                sql.Identifier(schema), sql.Identifier(f"{service}_idempotency_keys")
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " principal text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,"
                " owner uuid, lease_until timestamptz,"
                " status integer, content_type text, body bytea,"
                " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (principal, key))"
            ).format(sql.Identifier(schema), sql.Identifier(table_name(service)))
        )


def principal_key(principal: Principal) -> str:
    """Whose key it is: a key string is the caller's own, per role, partner and subject."""
    return f"{principal.role.value}:{principal.partner_id or '-'}:{principal.subject}"


class AnswerSeal:
    """Stored answers are sealed: they may hold a secret (a rotated webhook secret)."""

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(key.encode()) if key else None

    def seal(self, body: bytes) -> bytes:
        return self._fernet.encrypt(body) if self._fernet else body

    def open(self, stored: bytes) -> bytes:
        if self._fernet is None:
            return stored
        try:
            return self._fernet.decrypt(stored)
        except InvalidToken as error:
            raise Problem(
                422,
                "idempotency-answer-unreadable",
                "The answer stored for this Idempotency-Key was sealed with another key of the "
                "service; send the request with a new Idempotency-Key.",
            ) from error


class ClaimLostError(RuntimeError):
    """The lease ran out and another request took the key over: this one records nothing."""


class AnsweredBeforeError(Exception):
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.content_type = content_type
        self.body = body


@dataclass
class KeyedRequest:
    key: str
    fingerprint: str
    owner: UUID = field(default_factory=uuid4)
    principal: str | None = None
    claimed: bool = False
    renewal: asyncio.Task[None] | None = None


class KeyStore:
    def __init__(self, table: str, settings: ServiceSettings) -> None:
        self.table = table
        self.lease = settings.idempotency_lease_seconds
        self.retention = settings.idempotency_retention_hours * 3600
        self.seal = AnswerSeal(settings.resolved_answer_key())

    async def claim(self, pool: Any, keyed: KeyedRequest) -> None:
        """Take the key, or answer from what the store holds (raises)."""
        for _ in range(3):
            taken = await pool.fetchval(
                f"INSERT INTO {self.table} AS t"  # noqa: S608 - a quoted identifier
                " (principal, key, fingerprint, owner, lease_until)"
                " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"
                " ON CONFLICT (principal, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
                "  owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, status = NULL,"
                "  content_type = NULL, body = NULL, created_at = now()"
                " WHERE t.created_at < now() - make_interval(secs => $6)"
                "  OR (t.status IS NULL AND t.lease_until < now()"
                "      AND t.fingerprint = EXCLUDED.fingerprint)"
                " RETURNING 1",
                keyed.principal,
                keyed.key,
                keyed.fingerprint,
                keyed.owner,
                self.lease,
                self.retention,
            )
            if taken:
                keyed.claimed = True
                return
            row = await pool.fetchrow(
                f"SELECT fingerprint, status, content_type, body FROM {self.table}"  # noqa: S608
                " WHERE principal = $1 AND key = $2",
                keyed.principal,
                keyed.key,
            )
            if row is None:
                continue  # removed by housekeeping between the two statements
            if row["fingerprint"] != keyed.fingerprint:
                raise Problem(
                    422,
                    "idempotency-key-reused",
                    "This Idempotency-Key was used for a different request; use a new key.",
                )
            if row["status"] is None:
                break
            raise AnsweredBeforeError(
                row["status"], row["content_type"], self.seal.open(bytes(row["body"]))
            )
        raise Problem(
            409,
            "request-in-progress",
            "The first request with this Idempotency-Key is still running; retry it later.",
            headers={"Retry-After": "1"},
        )

    async def keep(self, pool: Any, keyed: KeyedRequest) -> None:
        """Renew the lease while the request runs."""
        while True:
            await asyncio.sleep(self.lease / 3)
            await pool.execute(
                f"UPDATE {self.table} SET lease_until = now() + make_interval(secs => $4)"  # noqa: S608
                " WHERE principal = $1 AND key = $2 AND owner = $3 AND status IS NULL",
                keyed.principal,
                keyed.key,
                keyed.owner,
                self.lease,
            )

    async def release(self, pool: Any, keyed: KeyedRequest) -> None:
        await pool.execute(
            f"DELETE FROM {self.table}"  # noqa: S608
            " WHERE principal = $1 AND key = $2 AND owner = $3 AND status IS NULL",
            keyed.principal,
            keyed.key,
            keyed.owner,
        )

    def answer(self, keyed: KeyedRequest, status: int, content_type: str, body: bytes) -> Any:
        """What stores the answer in the transaction that records the request's events."""
        statement = sql.SQL(
            "UPDATE {} SET status = %s, content_type = %s, body = %s, lease_until = NULL"
            " WHERE principal = %s AND key = %s AND owner = %s AND status IS NULL"
        ).format(sql.SQL(self.table))
        sealed = self.seal.seal(body)

        def store(curs: Any) -> None:
            curs.execute(
                statement,
                (status, content_type, sealed, keyed.principal, keyed.key, keyed.owner),
            )
            if curs.rowcount != 1:
                raise ClaimLostError(keyed.key)

        return store

    async def tidy(self, pool: Any) -> None:
        await pool.execute(
            f"DELETE FROM {self.table} WHERE created_at < now() - make_interval(secs => $1)"  # noqa: S608
            " AND (status IS NOT NULL OR lease_until < now())",
            self.retention,
        )


@dataclass
class _Answer:
    """A response held back until the request's events are recorded."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)

    async def capture(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name.lower() == b"content-type":
                return value.decode("latin-1")
        return "application/json"

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def send(self, send: Send, key: str | None) -> None:
        headers = self.headers
        if key:
            headers = [*headers, (HEADER, key.encode("latin-1"))]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _problem(status: int, kind: str, detail: str, path: str) -> _Answer:
    body = {"type": f"/problems/{kind}", "status": status, "detail": detail, "instance": path}
    headers = [(b"content-type", b"application/problem+json")]
    if status == 409:
        headers.append((b"retry-after", b"1"))
    return _Answer(status, headers, [json.dumps({"title": "Write", **body}).encode()])


def _route_of(scope: Scope) -> RouteContext | None:
    """The route of the app that takes this method at this path, if one does."""
    return next(
        (
            route
            for route in iter_route_contexts(scope["app"].routes)
            if route.matches(scope)[0] is Match.FULL
        ),
        None,
    )


class WriteRequestMiddleware:
    def __init__(
        self, app: ASGIApp, *, service: str, schema: str, settings: ServiceSettings
    ) -> None:
        self.app = app
        self.store = KeyStore(f'"{schema}"."{table_name(service)}"', settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route_of(scope) if scope["type"] == "http" and scope["method"] in WRITES else None
        if route is None:
            await self.app(scope, receive, send)  # not a write, or a 404 or 405 left unread
            return
        if (limit := getattr(route, "max_body_size", None)) is not None:
            scope[ROUTE_BODY_LIMIT] = limit  # BodyLimit reads no further than the route takes
        # Who asks is known before the body is read: nobody unauthenticated makes a service
        # read (or hold) a body, nor learns from the answer whether it was well formed.
        scheme, token = bearer_token(Headers(scope=scope).get("authorization", ""))
        try:
            scope[VERIFIED] = await verified(scope["app"].state.verifier, scheme, token)
        except Problem as problem:
            await answer_to(Request(scope), problem)(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(HEADER)
        key = "" if sent is None else sent.decode("latin-1")
        if sent is not None and not KEY_PATTERN.fullmatch(key):
            answer = _problem(
                400,
                "bad-idempotency-key",
                f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} visible ASCII characters.",
                scope["path"],
            )
            await answer.send(send, None)
            return
        body, rest = await _read_body(receive)
        keyed = KeyedRequest(key, _fingerprint(scope, body)) if key else None
        state = scope["app"].state
        pool = state.pool
        if keyed is not None:
            scope[ON_AUTHORIZED] = self._claiming(keyed, pool)
        try:
            answer = await self._answer(scope, body, rest, receive, state.runtime.app, keyed, pool)
        finally:
            if keyed is not None and keyed.renewal is not None:
                keyed.renewal.cancel()
            if keyed is not None and keyed.claimed:
                await self.store.release(pool, keyed)  # a no-op once the answer is stored
        await answer.send(send, key or None)

    def _claiming(self, keyed: KeyedRequest, pool: Any) -> OnAuthorized:
        async def claim(principal: Principal) -> None:
            if keyed.claimed:
                return  # a request run again after a conflict keeps its claim
            keyed.principal = principal_key(principal)
            await self.store.claim(pool, keyed)
            keyed.renewal = asyncio.create_task(self.store.keep(pool, keyed))
            if random.random() < 0.01:  # noqa: S311 - housekeeping, now and then
                await self.store.tidy(pool)

        return claim

    async def _answer(
        self,
        scope: Scope,
        body: bytes,
        rest: list[Message],
        receive: Receive,
        app: ServiceApplication,
        keyed: KeyedRequest | None,
        pool: Any,
    ) -> _Answer:
        for _ in range(ATTEMPTS):
            writes = RequestWrites(app)
            answer = _Answer()
            try:
                with collecting(writes):
                    await self.app(scope, _replaying(body, rest, receive), answer.capture)
            except IntegrityError:
                continue  # another writer changed what this request read: decide again
            claimed = keyed is not None and keyed.claimed
            if answer.status >= 500 or (claimed and answer.status in (401, 403)):
                return answer  # nothing recorded; the claim is released
            if writes.empty and not claimed:
                return answer
            store = (
                self.store.answer(keyed, answer.status, answer.content_type, answer.body)
                if keyed is not None and claimed
                else None
            )
            try:
                await run_in_threadpool(app.record_request, writes, store)
            except IntegrityError:
                continue
            except ClaimLostError:
                return _problem(
                    409,
                    "request-in-progress",
                    "This request ran past its claim on the Idempotency-Key and another "
                    "request with the key took over: its answer is the one kept; retry.",
                    scope["path"],
                )
            return answer
        return _problem(
            409,
            "write-conflict",
            f"Other writers changed the same records {ATTEMPTS} times while this request "
            "was decided; nothing was recorded. Retry it.",
            scope["path"],
        )


def install_answers(api: FastAPI) -> None:
    """Answers replayed from the store, as they were first sent."""

    async def replay(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AnsweredBeforeError)
        return Response(
            exc.body,
            status_code=exc.status,
            media_type=exc.content_type,
            headers={"idempotent-replayed": "true"},
        )

    api.add_exception_handler(AnsweredBeforeError, replay)


def _fingerprint(scope: Scope, body: bytes) -> str:
    return hashlib.sha256(
        b"\0".join(
            [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body]
        )
    ).hexdigest()


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
    pending = list(rest)

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
