"""Tiering's domain: the partners of the program, its policy, and the tiers it gives."""
