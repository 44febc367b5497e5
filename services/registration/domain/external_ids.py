"""CRM ids are unique per kind of record: a second record with the same id is refused, so a CRM
that retries, or an import that runs twice, records nothing new."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dealreg:external-id")


class ExternalId(Aggregate):
    @staticmethod
    def create_id(kind: str, external_id: str, **_: object) -> UUID:
        return uuid5(_NAMESPACE, f"{kind}|{external_id}")

    @event("Taken")
    def __init__(self, kind: str, external_id: str, entity_id: UUID) -> None:
        self.kind = kind
        self.external_id = external_id
        self.entity_id = entity_id
