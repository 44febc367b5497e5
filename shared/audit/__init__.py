"""The audit trail: causes on every event, the hash chain, history and replay."""
