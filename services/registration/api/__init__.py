"""Registration's HTTP API: one router per resource."""

from services.registration.api.contracts import contracts
from services.registration.api.direct_deals import direct_deals
from services.registration.api.imports import imports
from services.registration.api.registrations import registrations
from services.registration.api.review import review
from services.registration.api.webhooks import webhooks
from shared.edge import service_edge

routers = [service_edge(registrations, review, contracts, direct_deals, imports, webhooks)]

__all__ = ["routers"]
