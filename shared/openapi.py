"""Each service's OpenAPI document as the contract its clients are generated from.

FastAPI describes the success of an operation; this completes the document with everything
else a client meets (decision 0021):

- every status an operation can answer, each error as ``application/problem+json``. Most
  follow from the route itself: a bearer token (401, 403), a path parameter (404), parameters
  or a body (422), a body (413, 415), a write's ``Idempotency-Key`` (400, 409, 422). A route
  adds the statuses of its own rules with ``responses=problems(...)``;
- who may call it (``x-roles``, also in its description);
- the ``Idempotency-Key`` header of every write, which a middleware reads;
- text as the edge takes it (``shared.edge``): no NUL in a string, dates in the program's days.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from shared.auth import Allow, Role, current_principal
from shared.idempotency import KEY_PATTERN, MAX_KEY_LENGTH, WRITES
from shared.problems import MEANINGS, PROBLEM_JSON

_OF_WRITES = {
    409: " Or the first request with this `Idempotency-Key` is still running (`Retry-After`).",
    422: " Or this `Idempotency-Key` was used for a different request.",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. `type` is stable per kind of error.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["/problems/validation-error"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "location": {"type": "array", "items": {"type": "string"}},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

STORABLE_TEXT = "^[^\\u0000]*$"
"""No NUL: PostgreSQL text cannot hold it (``shared.edge``)."""
PROGRAM_YEARS = "^(19[0-9]{2}|2[0-9]{3})-"
"""The program's days run from 1900-01-01 to 2999-12-31 (``shared.program_dates``)."""


def operation_id(route: APIRoute) -> str:
    """An operation's id is its function's name (``register``, ``queue``): the names a generated
    client's functions take. ``completed`` checks that no two operations share one."""
    return route.name


def publish_contract(api: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = completed(FastAPI.openapi(api), api)
        contract: dict[str, Any] = api.openapi_schema
        return contract

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


def completed(raw: dict[str, Any], api: FastAPI) -> dict[str, Any]:
    document = copy.deepcopy(raw)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    routes = {  # each as included: with the dependencies of the routers it sits in
        (route.path_format, method.lower()): route
        for route in iter_route_contexts(api.routes)
        if isinstance(route.original_route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    ids = [op["operationId"] for ops in document.get("paths", {}).values() for op in ops.values()]
    if len(ids) != len(set(ids)):
        shared_ids = sorted({i for i in ids if ids.count(i) > 1})
        raise RuntimeError(f"operations share ids {shared_ids}: rename their functions")
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((path, method))
            if route is not None:
                _complete_operation(operation, route, method.upper())
    operations = [op for ops in document.get("paths", {}).values() for op in ops.values()]
    requested = [op.get("requestBody", {}) for op in operations]
    for name in _referenced(requested, schemas):
        _constrain_text(schemas[name])
    for operation in operations:
        for parameter in operation.get("parameters", []):
            _constrain_text(parameter.get("schema", {}))
    return document


def _complete_operation(operation: dict[str, Any], route: RouteContext, method: str) -> None:
    statuses = set(_statuses(route, method))
    responses = operation.setdefault("responses", {})
    statuses |= {int(status) for status in responses if str(status)[0] in "45"}
    for status in sorted(statuses):
        answer = responses.setdefault(str(status), {})
        meaning = MEANINGS.get(status, "An error.")
        if method in WRITES:
            meaning += _OF_WRITES.get(status, "")
        if answer.get("description") in (None, "", "Validation Error", MEANINGS.get(status)):
            answer["description"] = meaning
        answer["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    operation["responses"] = dict(sorted(responses.items()))
    roles = _roles(route.dependant)
    if roles is not None:
        names = sorted(role.value for role in roles)
        operation["x-roles"] = names
        line = f"Roles: {', '.join(names)}."
        operation["description"] = f"{operation.get('description', '')}\n\n{line}".strip()
    if method in WRITES:
        operation.setdefault("parameters", []).append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes a retry safe: the same key with the same request gets the"
                " first answer again, without doing anything twice (for a day). A key used"
                " for a different request is a 422; while the first is still running, a 409.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_KEY_LENGTH,
                    "pattern": f"^{KEY_PATTERN.pattern}$",
                },
            }
        )


def _statuses(route: RouteContext, method: str) -> Iterator[int]:
    dependant = route.dependant
    if _roles(dependant) is not None:
        yield from (401, 403)
    if dependant.path_params:
        yield 404
    has_body = bool(dependant.body_params) or "requestBody" in (route.openapi_extra or {})
    if dependant.path_params or dependant.query_params or dependant.header_params or has_body:
        yield 422
    if has_body:
        yield 413
    if any(param.name == "cursor" for param in dependant.query_params):
        yield 404
    if method in WRITES:
        yield from (400, 409, 422)


def _roles(dependant: Dependant) -> frozenset[Role] | None:
    """The roles the route admits; every role when it needs a token of any role; None when it
    needs no token."""
    found: frozenset[Role] | None = None
    for dependency in _walk(dependant):
        if isinstance(dependency.call, Allow):
            roles = dependency.call.roles
            found = roles if found is None else found & roles
        elif dependency.call is current_principal and found is None:
            found = frozenset(Role)
    return found


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _walk(dependency)


def _referenced(roots: Any, schemas: dict[str, Any]) -> set[str]:
    """The component schemas ``roots`` refer to, directly or through others."""
    found: set[str] = set()
    stack = [roots]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.rsplit("/", 1)[-1] if ref.startswith("#/components/schemas/") else None
            if name and name not in found and name in schemas:
                found.add(name)
                stack.append(schemas[name])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _constrain_text(schema: Any) -> None:
    """Say of every string what the edge refuses: NUL, and dates outside the program."""
    if isinstance(schema, list):
        for item in schema:
            _constrain_text(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and "pattern" not in schema and "enum" not in schema:
        if schema.get("format") in ("date", "date-time"):
            schema["pattern"] = PROGRAM_YEARS
        elif "format" not in schema and "const" not in schema:
            schema["pattern"] = STORABLE_TEXT
    for value in schema.values():
        if isinstance(value, dict | list):
            _constrain_text(value)
