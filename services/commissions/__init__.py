"""Commissions: what partners earn on the contracts they win, line by line, explained."""
