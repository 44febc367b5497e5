"""A load generator, run as a process of its own: it sends POST requests read from a JSON-lines
file (``{"path": ..., "body": {...}, "token": ...}`` a line) to a server and prints one JSON
object with what it measured.

    python -m bench.loadgen URL REQUESTS --closed 16 --duration 10
    python -m bench.loadgen URL REQUESTS --rate 150 --duration 20

Closed loop (``--closed N``): N connections, each sending its next request as soon as the last
answered; gives the throughput and the latency at that concurrency. Open loop (``--rate R``):
requests are due at R a second whatever the answers; each is timed from when it was due, so
a server that falls behind shows it in the latency (no coordinated omission), and the rate
achieved says whether the server kept up.

The client is HTTP/1.1 keep-alive over asyncio streams on uvloop, requests encoded before the
clock starts: a small fraction of the cost of an ``httpx`` request, so that the generator is
not the limit (``bench.nullserver`` measures its own ceiling). Answers are read by their
``Content-Length``; any status other than ``--expect`` (201) counts as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop


@dataclass
class Outcome:
    mode: str
    requests: int = 0
    errors: int = 0
    duration_s: float = 0.0
    rate: float = 0.0
    """Answers a second (any status) over the measured span."""
    target_rate: float | None = None
    concurrency: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    late: int = 0
    """Open loop: requests still unanswered when the time was up (counted as errors)."""


def encode(host: str, line: dict[str, Any]) -> bytes:
    body = json.dumps(line["body"], separators=(",", ":")).encode()
    headers = [
        f"POST {line.get('path', '/')} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if line.get("token"):
        headers.append(f"Authorization: Bearer {line['token']}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; the status and the body of its answer."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise ValueError("chunked answers are not read")
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


class Run:
    def __init__(self, url: str, requests: list[bytes], expect: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.requests, self.expect = requests, expect
        self.next = 0
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors = 0
        self.first_error = ""

    def take(self) -> bytes:
        request = self.requests[self.next % len(self.requests)]
        self.next += 1
        return request

    async def one(self, connection: Connection, started: float, record: bool) -> Connection:
        """Send the next request on ``connection``; the connection to use next (a new one when
        this one failed)."""
        try:
            status, body = await connection.send(self.take())
        except (OSError, ValueError, RuntimeError, asyncio.IncompleteReadError) as error:
            status, body = 0, repr(error).encode()
            connection.close()
            connection = await Connection.open(self.host, self.port)
        if not record:
            return connection
        self.latencies.append((time.perf_counter() - started) * 1000)
        self.statuses[str(status)] += 1
        if status != self.expect:
            self.errors += 1
            self.first_error = self.first_error or f"{status} {body[:300].decode(errors='replace')}"
        return connection

    def outcome(self, mode: str, span: float, concurrency: int) -> Outcome:
        answered = sorted(self.latencies)
        q = statistics.quantiles(answered, n=100, method="inclusive") if len(answered) > 1 else []
        return Outcome(
            mode=mode,
            requests=len(answered),
            errors=self.errors,
            duration_s=round(span, 3),
            rate=round(len(answered) / span, 1) if span else 0.0,
            concurrency=concurrency,
            p50_ms=round(q[49], 2) if q else 0.0,
            p90_ms=round(q[89], 2) if q else 0.0,
            p99_ms=round(q[98], 2) if q else 0.0,
            max_ms=round(answered[-1], 2) if answered else 0.0,
            statuses=dict(self.statuses),
            first_error=self.first_error,
        )

    async def closed(self, concurrency: int, duration: float, warmup: float) -> Outcome:
        connections = [await Connection.open(self.host, self.port) for _ in range(concurrency)]
        begin = time.perf_counter()
        measure_from, end = begin + warmup, begin + warmup + duration

        async def client(connection: Connection) -> None:
            while (started := time.perf_counter()) < end:
                connection = await self.one(connection, started, started >= measure_from)
            connection.close()

        await asyncio.gather(*(client(c) for c in connections))
        span = time.perf_counter() - measure_from
        return self.outcome("closed", span, concurrency)

    async def open_loop(self, rate: float, duration: float, connections: int) -> Outcome:
        """Requests due at ``rate`` a second for ``duration`` seconds; a request waits for a
        free connection (of at most ``connections``), and that wait counts in its latency."""
        idle: asyncio.Queue[Connection] = asyncio.Queue()
        opened = 0
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()

        async def send(due: float) -> None:
            nonlocal opened
            if idle.empty() and opened < connections:
                opened += 1
                connection = await Connection.open(self.host, self.port)
            else:
                connection = await idle.get()
            idle.put_nowait(await self.one(connection, due, True))

        for _ in range(min(connections, 8)):  # the first few open before the clock starts
            idle.put_nowait(await Connection.open(self.host, self.port))
            opened += 1
        begin = time.perf_counter()
        total = int(rate * duration)
        for i in range(total):
            due = begin + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(send(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        grace = max(5.0, duration / 2)  # answers due in the span may come a little later
        _, late = await asyncio.wait(pending, timeout=grace) if pending else (set(), set())
        span = time.perf_counter() - begin
        for task in late:
            task.cancel()
        outcome = self.outcome("open", span, opened)  # the span ends with the last answer
        outcome.target_rate = rate
        outcome.late = len(late)
        outcome.errors += len(late)
        while not idle.empty():
            idle.get_nowait().close()
        return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8001")
    parser.add_argument("requests", type=Path, help="JSON lines: path, body, token")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--closed", type=int, metavar="N", help="closed loop, N connections")
    mode.add_argument("--rate", type=float, metavar="R", help="open loop, R requests a second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="closed loop: not measured")
    parser.add_argument("--connections", type=int, default=256, help="open loop: at most")
    parser.add_argument("--expect", type=int, default=201)
    parser.add_argument("--skip", type=int, default=0, help="start at this line of REQUESTS")
    args = parser.parse_args()
    host = urlsplit(args.url).netloc
    with args.requests.open() as lines:
        requests = [encode(host, json.loads(line)) for line in lines if line.strip()]
    if not requests:
        raise SystemExit("no requests")
    skip = args.skip % len(requests)
    run = Run(args.url, requests[skip:] + requests[:skip], args.expect)
    if args.closed is not None:
        outcome = uvloop.run(run.closed(args.closed, args.duration, args.warmup))
    else:
        outcome = uvloop.run(run.open_loop(args.rate, args.duration, args.connections))
    json.dump(asdict(outcome) | {"sent": run.next, "pool": len(requests)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
