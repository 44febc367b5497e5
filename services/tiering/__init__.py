"""Tiering: the partner program's members, what they signed and achieved, and their tiers."""
