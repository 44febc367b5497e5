import pytest

from services.registration.domain.customers import (
    customer_key,
    normalized_name,
    registrable_domain,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("www.acme.co.uk", "acme.co.uk"),
        ("bob@sales.acme.co.uk", "acme.co.uk"),
        ("https://shop.acme.com/path?q=1", "acme.com"),
        ("ACME.COM.", "acme.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("localhost", None),
        ("co.uk", None),
    ],
)
def test_registrable_domain(given: str, expected: str | None) -> None:
    assert registrable_domain(given) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Acme Corp", "acme"),
        ("ACME Corporation Ltd", "acme"),
        ("Société Générale S.A.", "societe generale"),
        ("Müller GmbH", "muller"),
        ("Inc", "inc"),
    ],
)
def test_normalized_name(name: str, expected: str) -> None:
    assert normalized_name(name) == expected


def test_domain_wins_over_name_and_name_needs_country() -> None:
    assert customer_key(name="X", country="GB", domain="www.acme.co.uk") == "domain:acme.co.uk"
    assert customer_key(name="Acme Ltd", country="gb") == "name:acme|GB"
    assert customer_key(name="Acme Ltd", country="GB") != customer_key(name="Acme", country="US")


def test_a_customer_with_a_domain_and_a_name_is_known_by_both_keys() -> None:
    """DOMAIN.md, "Customers and identity": both keys, and either makes the same customer."""
    from services.registration.domain.customers import CustomerIdentity

    both = CustomerIdentity.of(name="ACME Corporation Ltd", country="gb", email="bob@acme.co.uk")
    assert both.keys == ("domain:acme.co.uk", "name:acme|GB")
    named = CustomerIdentity.of(name="Acme Corp", country="GB")
    assert named.keys == ("name:acme|GB",)
    assert set(named.keys) & set(both.keys)
