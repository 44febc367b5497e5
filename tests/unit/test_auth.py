from uuid import uuid4

import jwt
import pytest

from shared.auth import MissingKeyError, Role, TokenVerifier, mint_token
from shared.problems import Problem
from shared.settings import ServiceSettings

SECRET = "unit-test-secret-long-enough-for-hs256"


def verifier(**overrides: object) -> TokenVerifier:
    return TokenVerifier(ServiceSettings(jwt_secret=SECRET, **overrides))  # type: ignore[arg-type]


def test_a_minted_token_verifies_with_its_role_and_partner() -> None:
    partner_id = uuid4()
    principal = verifier().verify(
        mint_token(SECRET, Role.PARTNER, subject="portal", partner_id=partner_id)
    )
    assert (principal.role, principal.partner_id) == (Role.PARTNER, partner_id)
    assert principal.may_see_partner(partner_id)
    assert not principal.may_see_partner(uuid4())


@pytest.mark.parametrize(
    "token",
    [
        mint_token(SECRET, Role.ADMIN, subject="a", ttl_seconds=-10),
        mint_token(SECRET, Role.ADMIN, subject="a", audience="someone-else"),
        mint_token("another-secret-that-is-long-enough!!", Role.ADMIN, subject="a"),
        jwt.encode({"sub": "a", "role": "admin", "aud": "dealreg", "exp": 2**40}, None, "none"),
        jwt.encode(
            {"sub": "a", "role": "emperor", "aud": "dealreg", "exp": 2**40}, SECRET, "HS256"
        ),
        jwt.encode({"sub": "a", "role": "partner", "aud": "dealreg", "exp": 2**40}, SECRET),
        "not-a-jwt",
    ],
)
def test_bad_tokens_are_unauthenticated(token: str) -> None:
    with pytest.raises(Problem) as raised:
        verifier().verify(token)
    assert raised.value.status == 401


def test_a_service_without_any_key_refuses_to_start(tmp_path: object) -> None:
    with pytest.raises(MissingKeyError):
        TokenVerifier(ServiceSettings(data_dir=tmp_path))  # type: ignore[arg-type]


def test_a_partner_token_needs_a_partner() -> None:
    with pytest.raises(ValueError, match="partner id"):
        mint_token(SECRET, Role.PARTNER, subject="p")
