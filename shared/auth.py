"""Bearer JWTs, verified by every service; roles as in DESIGN.md.

Tokens carry ``sub``, ``role`` and, for the ``partner`` role, ``partner_id``. Keys come from
settings: an HS256 secret (development and CRM tokens minted by ``dealreg token``), a PEM public
key, or the identity provider's JWKS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.audit.causes import attribute_request
from shared.problems import Problem
from shared.settings import ServiceSettings

ON_AUTHORIZED = "dealreg.on_authorized"
"""Where a write request's scope holds what to call once its caller may make it: the
Idempotency-Key's claim (``shared.idempotency``), made for the verified caller only."""


class Role(StrEnum):
    ADMIN = "admin"
    CHANNEL_MANAGER = "channel_manager"
    FINANCE = "finance"
    CRM = "crm"
    AUDITOR = "auditor"
    PARTNER = "partner"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    partner_id: UUID | None = None

    def may_see_partner(self, partner_id: UUID | None) -> bool:
        return self.role is not Role.PARTNER or (
            partner_id is not None and partner_id == self.partner_id
        )


class MissingKeyError(RuntimeError):
    pass


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self._secret = settings.resolved_jwt_secret()
        self._public_key = settings.jwt_public_key
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None
        if not (self._secret or self._public_key or self._jwks):
            raise MissingKeyError(
                "no key to verify tokens: set DEALREG_JWT_SECRET, DEALREG_JWT_PUBLIC_KEY or "
                "DEALREG_JWKS_URL (or start with `dealreg run`, which makes a development secret)"
            )

    @property
    def may_block(self) -> bool:
        """Whether verifying may fetch keys over the network (a JWKS URL)."""
        return self._jwks is not None

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg", "")
        if algorithm == "HS256" and self._secret:
            return self._secret, ["HS256"]
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key, [algorithm]
        if self._public_key and algorithm in {"RS256", "ES256", "EdDSA"}:
            return self._public_key, [algorithm]
        raise jwt.InvalidAlgorithmError(
            f"tokens signed with {algorithm or 'none'} are not accepted"
        )

    def verify(self, token: str) -> Principal:
        try:
            key, algorithms = self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "role"]},
            )
            role = Role(claims["role"])
            partner_id = UUID(claims["partner_id"]) if claims.get("partner_id") else None
        except (jwt.PyJWTError, ValueError, KeyError) as error:
            raise _unauthenticated(f"The bearer token is not valid: {error}") from error
        if role is Role.PARTNER and partner_id is None:
            raise _unauthenticated("A partner token must carry a partner_id claim.")
        return Principal(subject=str(claims["sub"]), role=role, partner_id=partner_id)


def mint_token(
    secret: str,
    role: Role,
    *,
    subject: str,
    partner_id: UUID | None = None,
    ttl_seconds: int = 8 * 3600,
    audience: str = "dealreg",
    issuer: str | None = None,
) -> str:
    if role is Role.PARTNER and partner_id is None:
        raise ValueError("a partner token needs a partner id")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role.value,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    if partner_id is not None:
        claims["partner_id"] = str(partner_id)
    return jwt.encode(claims, secret, algorithm="HS256")


def development_subject(role: Role, partner_id: UUID | None = None) -> str:
    """A development token's subject: one per role and partner, so that no two callers share
    what belongs to a subject (their Idempotency-Keys, the actor named in the log)."""
    return f"dev-{role.value}" + (f"-{partner_id}" if partner_id else "")


def _unauthenticated(detail: str) -> Problem:
    return Problem(
        401, "unauthenticated", detail, headers={"WWW-Authenticate": 'Bearer realm="dealreg"'}
    )


_bearer = HTTPBearer(
    auto_error=False, description="A JWT from the identity provider or `dealreg token`."
)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # Async: a sync dependency costs every request a trip through the thread pool.
    principal: Principal | None = request.scope.get(VERIFIED)  # a write's, by its middleware
    if principal is None:
        bearer = credentials.credentials if credentials else None
        scheme = credentials.scheme if credentials else None
        principal = await verified(request.app.state.verifier, scheme, bearer)
    attribute_request(principal.subject, principal.role.value)
    return principal


VERIFIED = "dealreg.verified_principal"
"""Where the write middleware (``shared.idempotency``), which verifies a token before the body
is read, leaves the principal for the route's dependency: one verification per request."""


def bearer_token(authorization: str) -> tuple[str, str]:
    """The scheme and the token of an ``Authorization`` header."""
    scheme, _, token = authorization.partition(" ")
    return scheme, token.strip()


async def verified(verifier: TokenVerifier, scheme: str | None, token: str | None) -> Principal:
    """The principal of a bearer token, or a 401 problem. Checking a signature takes
    microseconds; only fetching a JWKS does I/O, and that goes to a thread."""
    if not token or (scheme or "").lower() != "bearer":
        raise _unauthenticated("This endpoint needs an `Authorization: Bearer <token>` header.")
    if verifier.may_block:
        return await run_in_threadpool(verifier.verify, token)
    return verifier.verify(token)


class Allow:
    """Dependency that admits only some roles: ``Depends(Allow(Role.ADMIN, Role.AUDITOR))``."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(role.value for role in self.roles))
            raise Problem(
                403,
                "forbidden-role",
                f"The role {principal.role.value!r} may not do this; allowed: {allowed}.",
            )
        # Only now may the request's Idempotency-Key be looked up (shared.idempotency).
        authorized = request.scope.get(ON_AUTHORIZED)
        if authorized is not None:
            await authorized(principal)
        return principal
