"""Commissions' HTTP API: one router per resource."""

from services.commissions.api.ledger import ledger
from services.commissions.api.partners import partner_tiers, partners
from services.commissions.api.payouts import payouts
from services.commissions.api.rates import rates
from services.commissions.api.statements import statements
from services.commissions.api.whatif import what_if
from shared.edge import service_edge

routers = [service_edge(statements, ledger, payouts, partners, partner_tiers, rates, what_if)]

__all__ = ["routers"]
