"""Tiering's HTTP API: one router per resource."""

from services.tiering.api.achievements import achievements
from services.tiering.api.partners import partners
from services.tiering.api.program import program
from services.tiering.api.tiers import tiers
from services.tiering.api.whatif import what_if
from shared.edge import service_edge

routers = [service_edge(partners, achievements, tiers, program, what_if)]

__all__ = ["routers"]
