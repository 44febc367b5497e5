"""Who, when and why, recorded with every event.

Every event a service records carries its *cause* in the stored state (key ``$audit``, beside
the event's own fields, covered by the log's hash chain): the actor (a token's subject and role,
a service, or the clock), the request id, and the correlation and causation ids that link it to
what caused it. An HTTP request causes events under its request id and correlation id (the
caller's ``X-Correlation-ID``, else the request id); a service deciding on another log's event
records ``<log>:<position>`` of that event as the causation and keeps its correlation id, so a
request can be followed through every service it set in motion.

The cause is set by the edges (the HTTP middleware, the followers, the clock, the CLI) in a
context variable, and read where events are encoded, never by the domain.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from asgi_correlation_id import correlation_id as request_id_var

AUDIT_KEY = "$audit"

SERVICE_ROLE = "service"
"""The role of a service acting on its own: deciding on another log's event, or on time."""


@dataclass
class Cause:
    """Why events are being recorded now (mutable: the token is read after the request began)."""

    actor: str
    role: str
    correlation_id: str
    causation_id: str
    request_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


_current: ContextVar[Cause | None] = ContextVar("dealreg_cause", default=None)


def current_cause() -> Cause:
    """The cause in force; outside any request, follower or command: the process itself."""
    cause = _current.get()
    if cause is not None:
        return cause
    process = f"process:{getpass.getuser()}:{sys.argv[0].rsplit('/', 1)[-1] or 'python'}"
    return Cause(actor=process, role="system", correlation_id=process, causation_id=process)


def cause_in_force() -> Cause | None:
    return _current.get()


@contextmanager
def caused_by(cause: Cause) -> Iterator[Cause]:
    token = _current.set(cause)
    try:
        yield cause
    finally:
        _current.reset(token)


def event_reference(log: str, position: int) -> str:
    """How an event is named in another event's causation: ``<log>:<position>``."""
    return f"{log}:{position}"


def caused_by_event(service: str, log: str, position: int, correlation_id: str | None) -> Cause:
    """A service deciding on an event of a log (its own or another's)."""
    reference = event_reference(log, position)
    return Cause(
        actor=service,
        role=SERVICE_ROLE,
        correlation_id=correlation_id or reference,
        causation_id=reference,
    )


def caused_by_time(service: str, until: str) -> Cause:
    """A service's clock running time up to an instant."""
    reference = f"clock:{service}:{until}"
    return Cause(
        actor=f"{service}:clock",
        role=SERVICE_ROLE,
        correlation_id=reference,
        causation_id=reference,
    )


def caused_by_operator(command: str) -> Cause:
    """A command run by hand (``dealreg clock``, a rebuild, a bulk load)."""
    user = getpass.getuser()
    reference = f"cli:{command}"
    return Cause(
        actor=f"operator:{user}", role="operator", correlation_id=reference, causation_id=reference
    )


def request_cause(correlation_header: str | None) -> Cause:
    """A request's cause before its token is read (the actor is filled in by authentication)."""
    request_id = request_id_var.get()
    reference = f"request:{request_id}" if request_id else "request"
    return Cause(
        actor="anonymous",
        role="none",
        correlation_id=correlation_header or request_id or reference,
        causation_id=reference,
        request_id=request_id,
    )


def attribute_request(subject: str, role: str) -> None:
    """Authentication names the actor of the request in progress."""
    cause = _current.get()
    if cause is not None and cause.request_id is not None:
        cause.actor = subject
        cause.role = role


class CauseMiddleware:
    """Puts a request's cause in force for everything the request does (pure ASGI, so that the
    context variable is inherited by the thread pool that runs the endpoints)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-correlation-id"
            ),
            None,
        )
        with caused_by(request_cause(header[:128] if header else None)):
            await self.app(scope, receive, send)
