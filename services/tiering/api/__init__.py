"""Tiering's HTTP API: one router per resource."""

from services.tiering.api.achievements import achievements
from services.tiering.api.partners import partners
from services.tiering.api.program import program
from services.tiering.api.tiers import tiers

routers = [partners, achievements, tiers, program]

__all__ = ["routers"]
