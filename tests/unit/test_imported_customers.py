"""The customers an import has recorded so far, as the deals view would answer for them."""

from __future__ import annotations

import uuid

from services.registration.domain.customers import CustomerIdentity, match_keys
from services.registration.importer import ImportedCustomers


def identity(name: str, domain: str | None = None) -> CustomerIdentity:
    return CustomerIdentity.of(name=name, country="US", domain=domain)


def similar(imported: ImportedCustomers, who: CustomerIdentity, line: str = "cloud") -> list[str]:
    return [other.name for _, other in imported.similar_customers(who, line, match_keys(who))]


def add(imported: ImportedCustomers, who: CustomerIdentity, line: str = "cloud") -> None:
    imported.add(uuid.uuid4(), who, line, match_keys(who))


def test_candidates_share_keys_the_product_line_but_not_the_customer() -> None:
    imported = ImportedCustomers()
    add(imported, identity("Quorvane Meditech"))
    add(imported, identity("Quorvane Meditech", "quorvane.com"), "security")
    add(imported, identity("Zelbrix Aerotron"))
    assert similar(imported, identity("Quorvane Meditek")) == ["quorvane meditech"]
    assert similar(imported, identity("Quorvane Meditech")) == []  # the same customer


def test_most_shared_keys_first_up_to_the_limit() -> None:
    imported = ImportedCustomers(limit=2)
    for name in ("Quorvane Meditech", "Quorvane", "Quorvane Meditek", "Quorvane Medi"):
        add(imported, identity(name))
    found = similar(imported, identity("Quorvane Meditec"))
    assert len(found) == 2
    assert found[0] in {"quorvane meditech", "quorvane meditek"}


def test_a_failed_batch_is_forgotten() -> None:
    imported = ImportedCustomers()
    add(imported, identity("Acme Widgets"))
    mark = imported.mark()
    for name in ("Acme Widgetz", "Acme Widgets Two", "Zorbo"):
        add(imported, identity(name))
    assert len(similar(imported, identity("Acme Widgetz"))) == 2
    imported.forget_since(mark)
    assert similar(imported, identity("Acme Widgetz")) == ["acme widgets"]
    assert all(max(positions) < mark for positions in imported.by_key.values())
