"""Schemathesis hooks for the contract run (``SCHEMATHESIS_HOOKS``).

A well-formed ``Idempotency-Key`` is replaced by a fresh one. The key's contract is that it names
one request: the same key for a different request is a 422, by design (DESIGN.md). A fuzzer draws
keys from a small space and would send one key with many requests; ``test_idempotency.py``
tests what the key does. A malformed key is left as drawn, so that its refusal is still checked.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis

from shared.idempotency import KEY_PATTERN


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    headers = case.headers or {}
    for name in list(headers):
        key = headers[name]
        if (
            name.lower() == "idempotency-key"
            and isinstance(key, str)
            and KEY_PATTERN.fullmatch(key)
        ):
            headers[name] = str(uuid.uuid4())
