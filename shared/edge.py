"""The edge of every service: what a request must be before any command sees it.

A log must never hold an event that its own readers cannot read, so a request is refused (4xx,
naming the field) unless:

- its text is text PostgreSQL can store: no NUL (U+0000), which text columns refuse, and no lone
  surrogate (U+D800 to U+DFFF), which has no UTF-8 encoding. JSON lets both through
  (``"\\u0000"``, ``"\\ud800"``). Request bodies check every string they hold
  (``RequestModel``), query and path parameters likewise (``service_edge``);
- its dates lie in the program's range (``shared.program_dates``);
- it is of a bounded size: a body at most ``REQUEST_BODY_LIMIT`` (a route may allow more, as
  imports do), a text field at most ``TEXT_LIMIT`` characters unless the field says less, a
  document nested at most ``NESTING_LIMIT`` deep with at most ``NODE_LIMIT`` values (YAML
  aliases counted each time they are used).
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem_response
from shared.program_dates import in_program, outside_program_error, written_out

REQUEST_BODY_LIMIT = 1024 * 1024
"""Bytes. The largest request a service takes, a policy document, is a few KiB."""
TEXT_LIMIT = 2000
"""Characters of a text field that names no bound of its own (the longest, notes, take 2,000)."""
NESTING_LIMIT = 32
"""Levels of a JSON or YAML document; a policy document has 7, an import row 3."""
NODE_LIMIT = 100_000
"""Values in a document (a policy document has about 100)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What in ``text`` PostgreSQL text cannot hold, described; None when it can hold it all."""
    if "\x00" in text:
        return "U+0000 (NUL), which text cannot hold"
    if not text.isascii() and (surrogate := _SURROGATE.search(text)):
        return f"a lone surrogate (U+{ord(surrogate.group()):04X}), which is not text"
    return None


def _check(value: Any, where: str = "") -> None:
    """Raise a validation error for the first unstorable text or out-of-range date in
    ``value``, walking lists, sets and dicts (keys too). Nested request models checked
    themselves."""
    if isinstance(value, str):
        if reason := unstorable(value):
            raise PydanticCustomError(
                "text_unstorable", "{where}contains {reason}", {"where": where, "reason": reason}
            )
    elif isinstance(value, date):
        if not in_program(value):
            raise outside_program_error(value)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _check(item, f"{where}item {index} ")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, f"{where}key {key!r} ")
            _check(item, f"{where}{key!r} ")
    elif isinstance(value, BaseModel) and not isinstance(value, RequestModel):
        for name, item in value:
            _check(item, f"{where}{name} ")


def _temporal(annotation: Any) -> bool:
    """Whether a field holds a date or an instant (``date | None`` and ``Annotated`` too)."""
    if isinstance(annotation, type):
        return issubclass(annotation, date)
    return any(_temporal(argument) for argument in get_args(annotation))


class RequestModel(BaseModel):
    """The base of every request body (and import row): every string storable and at most
    ``TEXT_LIMIT`` characters unless its field says otherwise; every date written out and in
    the program."""

    model_config = ConfigDict(str_max_length=TEXT_LIMIT)

    @field_validator("*", mode="before")
    @classmethod
    def _dates_written_out(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and value is not None and _temporal(field.annotation):
            return written_out(value)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check(value)
        return value


async def storable_parameters(request: Request) -> None:
    """Query and path parameters hold text PostgreSQL can store (422 naming the parameter)."""
    errors = [
        {
            "type": "text_unstorable",
            "loc": (place, name),
            "msg": f"contains {reason}",
            "input": None,
        }
        for place, items in (
            ("path", request.path_params.items()),
            ("query", request.query_params.multi_items()),
        )
        for name, value in items
        if isinstance(value, str) and (reason := unstorable(value))
    ]
    if errors:
        raise RequestValidationError(errors)


ROUTE_BODY_LIMIT = "dealreg.route_body_limit"
"""Where a write's scope holds its route's body limit, set before the body is read
(``shared.idempotency``): ``BodyLimit`` reads no further than that."""


class BodyTooLargeError(HTTPException):
    """A request body longer than a limit (413, answered as ``/problems/content-too-large``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the {limit} bytes it may be.")
        self.limit = limit


class BodyLimit:
    """ASGI middleware, the outermost: no body longer than ``ceiling`` bytes, the most any route
    of the service takes, is read (middleware that buffers a write's body reads it before any
    route's own limit applies); and a body over a route's own ``max_body_size`` answered as a
    problem too, where Starlette, which enforces that limit, answers a bare text 413."""

    def __init__(self, app: ASGIApp, ceiling: int) -> None:
        self.app = app
        self.ceiling = ceiling

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = Headers(scope=scope).get("content-length", "")
        if announced.isdigit() and int(announced) > self.ceiling:
            await self._refuse(scope, receive, send, self.ceiling)
            return
        received = 0
        started = replaced = False

        async def receive_within_ceiling() -> Message:
            nonlocal received
            limit = min(self.ceiling, scope.get(ROUTE_BODY_LIMIT) or self.ceiling)
            if received == 0 and announced.isdigit() and int(announced) > limit:
                raise BodyTooLargeError(limit)  # the route's, known once it is matched
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLargeError(limit)
            return message

        async def send_as_problem(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] == 413 and content_type.startswith(b"text/plain"):
                    replaced = True
                    await self._refuse(scope, receive, send, scope.get(MAX_BODY_SIZE_SCOPE_KEY))
                    return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, receive_within_ceiling, send_as_problem)
        except BodyTooLargeError as error:  # raised where a middleware buffered the body
            if started:
                raise
            await self._refuse(scope, receive, send, error.limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int | None) -> None:
        problem = problem_response(
            Request(scope),
            413,
            "content-too-large",
            f"The request body is larger than the {limit} bytes it may be.",
            limit=limit,
        )
        await problem(scope, receive, send)


def service_edge(*routers: APIRouter) -> APIRouter:
    """A service's routers behind its edge: bodies at most ``REQUEST_BODY_LIMIT`` bytes unless a
    route sets its own ``max_body_size``, and parameters of storable text."""
    edge = APIRouter(max_body_size=REQUEST_BODY_LIMIT, dependencies=[Depends(storable_parameters)])
    for router in routers:
        edge.include_router(router)
    return edge


# --- documents ------------------------------------------------------------------------------


class DocumentTooLargeError(ValueError):
    """A JSON or YAML document nested deeper than ``NESTING_LIMIT`` or holding more than
    ``NODE_LIMIT`` values."""


def refuse_unbounded(document: Any) -> Any:
    """``document`` itself, if it is nested and sized within the limits."""
    stack = [(document, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if depth > NESTING_LIMIT:
            raise DocumentTooLargeError(f"nested deeper than {NESTING_LIMIT} levels")
        if values > NODE_LIMIT:
            raise DocumentTooLargeError(f"more than {NODE_LIMIT} values")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return document


def parse_json(text: str | bytes, **options: Any) -> Any:
    """``json.loads``, within the document limits (``DocumentTooLargeError`` beyond them)."""
    try:
        document = json.loads(text, **options)
    except RecursionError as error:  # the C decoder stops at the interpreter's recursion limit
        raise DocumentTooLargeError(f"nested deeper than {NESTING_LIMIT} levels") from error
    return refuse_unbounded(document)


_EVERY_ANSWER = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_CONTENT_BUT_DATA = b"default-src 'none'; frame-ancestors 'none'"
_PAGES = (  # /docs: its own scripts and styles (and Swagger UI's inline start), nothing else
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    b" img-src 'self' data:; frame-ancestors 'none'"
)


class SecurityHeaders:
    """ASGI middleware: the headers every answer carries (OWASP API8). Answers hold partner and
    commission data: no cache may keep them unless the route says otherwise; no answer is
    sniffed into another type, framed or sent with a referrer; and an answer that is not a
    page may load nothing at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                content_type = dict(headers).get(b"content-type", b"")
                added = [*_EVERY_ANSWER]
                added.append(
                    (
                        b"content-security-policy",
                        _PAGES if content_type.startswith(b"text/html") else _NO_CONTENT_BUT_DATA,
                    )
                )
                added.append((b"cache-control", b"no-store"))
                headers += [(name, value) for name, value in added if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
