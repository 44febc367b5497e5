"""RFC 9457 problem details: every error a client sees, with a stable ``type`` per error."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.program_dates import OutsideProgramError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    503: "Service unavailable",
}


MEANINGS = {
    400: "A malformed `Idempotency-Key`.",
    401: "No bearer token, or one that is not valid.",
    403: "The token's role may not do this, or a partner acts for another partner.",
    404: "Nothing of that id here (or nothing the caller may see), or a cursor this API did"
    " not hand out.",
    409: "The request conflicts with the current state of what it names.",
    413: "The body is larger than this operation takes.",
    415: "The body is of a media type this operation does not take.",
    422: "The request is not valid; `errors` names each field and what is wrong with it.",
    503: "The service cannot answer now; retry later.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose own rules answer these statuses."""
    return {status: {"description": MEANINGS[status]} for status in statuses}


class Problem(Exception):
    """An error a client should see. ``kind`` becomes the stable type ``/problems/<kind>``."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers
        self.extensions = extensions


class ProblemResponse(JSONResponse):
    """problem+json in ASCII: a detail may quote what the client sent, lone surrogates too, and
    those have no UTF-8 encoding (``\\ud800`` escaped is valid JSON)."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body = {
        "type": f"/problems/{kind}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    return ProblemResponse(jsonable_encoder(body), status_code=status, headers=headers)


def answer_to(request: Request, problem: Problem) -> ProblemResponse:
    return problem_response(
        request,
        problem.status,
        problem.kind,
        problem.detail,
        title=problem.title,
        headers=problem.headers,
        **problem.extensions,
    )


def _slug(status: int) -> str:
    return _TITLES.get(status, "error").lower().replace(" ", "-")


def _methods_at(request: Request) -> list[str]:
    """Every method some route takes at the request's path."""
    path = request.url.path
    return sorted(
        {
            method
            for route in iter_route_contexts(request.app.routes)
            if (pattern := getattr(route, "path_regex", None)) is not None and pattern.match(path)
            for method in getattr(route, "methods", None) or ()
        }
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return answer_to(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": [str(part) for part in error.get("loc", ())],
                "message": error.get("msg", ""),
                "type": error.get("type", ""),
            }
            for error in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in errors[:5])
        return problem_response(
            request,
            422,
            "validation-error",
            f"The request is not valid: {summary}",
            errors=errors,
        )

    @app.exception_handler(OutsideProgramError)
    async def on_outside_program(request: Request, exc: OutsideProgramError) -> JSONResponse:
        return await on_invalid(
            request,
            RequestValidationError(
                [{"loc": ("body", exc.field), "msg": str(exc), "type": "date_outside_program"}]
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names the methods of the first route it matched
            headers = {**(headers or {}), "Allow": ", ".join(_methods_at(request))}
        return problem_response(
            request, exc.status_code, _slug(exc.status_code), str(exc.detail), headers=headers
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            500,
            "internal-error",
            "The server failed to handle this request; it has been logged.",
            title="Internal server error",
        )
