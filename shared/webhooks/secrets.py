"""Endpoint secrets: made at random, kept sealed in the log, used to sign each delivery."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
SECRET_BYTES = 32


def new_secret() -> str:
    """``whsec_`` and 32 random bytes, base64: what the Standard Webhooks libraries take."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def key_from_passphrase(passphrase: str) -> str:
    """A sealing key derived from another secret (the development JWT secret)."""
    digest = hashlib.sha256(b"dealreg webhook secrets\x00" + passphrase.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


class SecretsUnreadableError(RuntimeError):
    """A sealed secret this service's key does not open: the services' keys differ."""


class SecretBox:
    """Seals endpoint secrets so that the log (which auditors export) never holds them in
    clear; every service holds the same key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as error:
            raise SecretsUnreadableError(
                "an endpoint secret cannot be opened: DEALREG_WEBHOOK_KEY differs between services"
            ) from error


def signature(message_id: str, timestamp: datetime, body: str, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` header: one ``v1,…`` signature per secret in force (two while
    a rotation overlaps)."""
    return " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets)
