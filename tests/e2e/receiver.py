"""A partner portal's webhook receiver: a real HTTP server that verifies every delivery with the
`standardwebhooks` package, and fails the first attempts of each message on purpose."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: str
    answered: int

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    def verifies_with(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    failures_per_message: int = 3
    deliveries: list[Delivery] = field(default_factory=list)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver._seen[headers.get("webhook-id", "")] += 1
                    fail = (
                        receiver._seen[headers.get("webhook-id", "")]
                        <= receiver.failures_per_message
                    )
                    answered = 500 if fail else 200
                    receiver.deliveries.append(Delivery(self.path, headers, body, answered))
                self.send_response(answered)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def to(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def accepted(self, path: str) -> list[Delivery]:
        return [d for d in self.to(path) if d.answered == 200]
