"""A webhook receiver for the benchmark, in a process of its own: it answers 204 at once and
appends ``<webhook-id> <arrival unix time> <event timestamp>`` to a file per delivery."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn

OUT = open(sys.argv[2], "a", buffering=1)  # noqa: SIM115 (open for the process's life)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    arrived = time.time()
    headers = dict(scope["headers"])
    timestamp = json.loads(body)["timestamp"]
    OUT.write(f"{headers.get(b'webhook-id', b'').decode()} {arrived} {timestamp}\n")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
