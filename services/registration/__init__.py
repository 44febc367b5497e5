"""Registration: deal registrations, customer identity and claims, contracts and renewals."""
