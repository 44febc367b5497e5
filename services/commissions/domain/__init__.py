"""Commissions' domain: what the program pays (rates, locks, contracts) and the statements."""
