"""Registration's domain: customer identity, the rules of engagement, contracts."""
