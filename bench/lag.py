"""The lag from a registration's commit to its effect in the followers' projections, at a steady
rate, and the resident memory (RSS) of each service at rest and under that load.

The three services run as real processes (commissions follows only contracts, not
registrations: it is there for its memory, and what a busy log it takes little from costs it).
``--partners`` partners are enrolled; then a sender process of its own posts
registrations on an open-loop schedule (``--rate`` per second for ``--seconds``: each request
leaves at its time whatever the earlier ones are doing) while a poller process, also of its own,
asks the database every ``--poll-ms``:

- which registrations' ``DealRegistered`` events (the event that opens one) are now in
  ``registration_events`` (committed: the recorder's table lock makes commit order the order of
  positions);
- which of those are now rows of ``registration_deals`` (registration's deals view) and of
  ``tiering_registrations`` (tiering's activity view, from the published ``DealRegistered``);
- how many saves are waiting for the table lock of ``registration_events`` (``pg_locks``), and
  whether its holder is working in the server or waiting for its client (``pg_stat_activity``).

The lag of one registration in one view is the time the poller first saw its row minus the time
it first saw its event. Both are taken with the poller's clock when the query returns, so each is
late by at most one poll (period plus the query, about ``--poll-ms`` + 1 ms): the lag is exact
to about that. The registration's HTTP response time (the sender's clock; same machine, same
clock) gives a second, independent bound: response arrival is after the commit.

Memory: each service's RSS (``VmRSS`` of the process and its children) after it started and then
idled ``--idle`` seconds, and the peak of samples every 0.25 s during the steady run; CPU: each
service's CPU seconds (``/proc/<pid>/stat``) over the run, per registration. The sender reports
how late it was on its schedule and its own CPU a request (a raw HTTP/1.1 client: httpx took
about 10 ms of CPU a request, too much to keep 100 a second on 2 cores).

Without ``--database-url`` (or BENCH_DATABASE_URL) the services run on a PostgreSQL server of
their own (``bench_database``, 200 connections), so that other databases' clients do not use up
the connections.

    python -m bench.lag --rate 100 --seconds 30 --results results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.registration_latency import company, enrol
from bench.report import Figure, record
from bench.services import SECRET, Service, bench_database, free_port, profiled
from shared.auth import Role, mint_token

VIEWS = {
    "registration deals view": "registration_deals",
    "tiering activity view": "tiering_registrations",
}
TARGET_MS = 250.0
LOCK_SQL = """
SELECT count(*) FILTER (WHERE NOT l.granted),
       max(a.state) FILTER (WHERE l.granted AND l.mode = 'ExclusiveLock')
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.relation = 'registration_events'::regclass
"""
"""Saves waiting for the table lock of registration's log, and what its holder is doing:
``active`` (the server works on its statement) or ``idle in transaction`` (it waits for its
client's next statement)."""


def send(port: int, partners: list[str], rate: float, seconds: float, out: str) -> None:
    """Post ``rate * seconds`` registrations, each at its scheduled time (open loop)."""
    asyncio.run(_send(port, partners, rate, seconds, Path(out)))


class Connections:
    """HTTP/1.1 keep-alive connections to 127.0.0.1, a new one whenever all are busy (so no
    request waits for another's answer). Requests are written whole and answers read by their
    ``Content-Length``: about a tenth of the CPU httpx takes a request, which at 100 a second
    on 2 cores is the difference between keeping the schedule and not."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{self.head}\r\n"
        )
        writer.write(request.encode() + body)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status, payload


async def _send(port: int, partners: list[str], rate: float, seconds: float, out: Path) -> None:
    crm = {"Authorization": f"Bearer {mint_token(SECRET, Role.CRM, subject='bench')}"}
    connections = Connections(port, crm)
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []

    async def one(n: int, scheduled: float) -> None:
        name = company(rng)
        body = {
            "partner_id": partners[n % len(partners)],
            "customer": {
                "name": f"{name} {n}",
                "country": "US",
                "domain": f"{name.replace(' ', '').lower()}-{n}.example",
            },
            "product_line": "cloud",
            "motion": "sell",
            "estimated_value": {"amount": "5000", "currency": "USD"},
            "expected_close": "2027-12-31",
        }
        sent = time.time()
        try:
            status, payload = await connections.post("/v1/registrations", json.dumps(body).encode())
            rid = json.loads(payload).get("registration_id")
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as error:
            status, rid = 0, None
            print(f"request {n}: {error!r}", file=sys.stderr)
        rows.append(
            {"scheduled": scheduled, "sent": sent, "done": time.time(), "status": status, "id": rid}
        )

    tasks = []
    start = time.time() + 0.5
    for n in range(round(rate * seconds)):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.time()))
        tasks.append(asyncio.create_task(one(n, scheduled)))
    await asyncio.gather(*tasks)
    sent = {"requests": rows, "cpu": time.process_time()}
    await asyncio.to_thread(out.write_text, json.dumps(sent))


def poll(database_url: str, period: float, stop_file: str, out: str) -> None:
    """Until ``stop_file`` exists and nothing is pending (or two minutes more): when each new
    registration (its ``DealRegistered``, the event that opens it) was first seen in the log,
    and when in each view."""
    seen_log: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {table: {} for table in VIEWS.values()}
    queries: list[float] = []
    waiting: list[int] = []  # saves waiting for registration_events' table lock, each poll
    holders: list[str] = []  # the state of the lock's holder, each poll ("free": none)
    stopping = 0.0
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM registration_events")
        position = row.fetchone()[0]  # type: ignore[index]
        while True:
            started = time.perf_counter()
            new = conn.execute(
                "SELECT notification_id, originator_id::text FROM registration_events"
                " WHERE notification_id > %s AND topic = 'DealRegistered'",
                (position,),
            ).fetchall()
            now = time.time()
            for notification_id, originator in new:
                position = max(position, notification_id)
                seen_log.setdefault(originator, now)
            for table, found in seen.items():
                pending = [i for i in seen_log if i not in found]
                if pending:
                    rows = conn.execute(
                        f"SELECT registration_id::text FROM {table}"  # noqa: S608 (constant)
                        " WHERE registration_id = ANY(%s::uuid[])",
                        (pending,),
                    ).fetchall()
                    now = time.time()
                    for (rid,) in rows:
                        found[rid] = now
            lock = conn.execute(LOCK_SQL).fetchone()
            waiting.append(lock[0] if lock else 0)
            holders.append(lock[1] if lock and lock[1] else "free")
            queries.append(time.perf_counter() - started)
            done = all(len(found) == len(seen_log) for found in seen.values())
            if os.path.exists(stop_file):
                stopping = stopping or time.time()
                if done or time.time() - stopping > 120:
                    break
            time.sleep(max(0.0, period - (time.perf_counter() - started)))
    result: dict[str, Any] = {
        "log": seen_log,
        "views": seen,
        "queries": queries,
        "waiting": waiting,
        "holders": holders,
    }
    Path(out).write_text(json.dumps(result))


def rss(pid: int) -> int:
    """Resident bytes of a process and its children (``VmRSS`` in ``/proc``; 0 once gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kib * 1024 + sum(rss(int(child)) for child in children)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far (0 once gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    own = ticks / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


class Peaks(threading.Thread):
    """The highest RSS of each service, sampled every ``interval`` seconds until stopped."""

    def __init__(self, services: Sequence[Service], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids = {s.name: s.process.pid for s in services if s.process}
        self.peaks = dict.fromkeys(self.pids, 0)
        self.interval, self.stopped = interval, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks[name], rss(pid))


def quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98], max(values)


def run(
    database_url: str | None,
    *,
    rate: float = 100.0,
    seconds: float = 30.0,
    partners: int = 20,
    idle: float = 10.0,
    poll_ms: float = 5.0,
    profile: Path | None = None,
) -> list[Figure]:
    logs = Path(tempfile.mkdtemp(prefix="dealreg-bench-logs-"))
    spawn = multiprocessing.get_context("spawn")
    figures: list[Figure] = []
    with bench_database(database_url, max_connections=200) as url:
        tiering = Service("tiering", url, free_port(), logs / "tiering.log")
        registration = Service("registration", url, free_port(), logs / "registration.log")
        # Commissions follows registration's contracts only: here, for its memory and for
        # what following a busy log it takes little from costs it.
        commissions = Service("commissions", url, free_port(), logs / "commissions.log")
        services = [registration, tiering, commissions]
        try:
            tiering.start()
            registration.start()
            commissions.start()
            partner_ids = [str(partner) for partner in enrol(tiering, partners)]
            time.sleep(idle)
            at_rest = {s.name: rss(s.process.pid) for s in services if s.process}
            peaks = Peaks(services)
            peaks.start()
            cpu = {s.name: cpu_seconds(s.process.pid) for s in services if s.process}
            stop_file, polled, sent = logs / "stop", logs / "polled.json", logs / "sent.json"
            poller = spawn.Process(
                target=poll, args=(url, poll_ms / 1000, str(stop_file), str(polled))
            )
            sender = spawn.Process(
                target=send, args=(registration.port, partner_ids, rate, seconds, str(sent))
            )
            poller.start()
            time.sleep(1)
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
            # Where registration's CPU goes: only the thread holding the GIL is sampled.
            out = profile / "registration-gil.txt" if profile else None
            with profiled(registration, out, gil=True):
                sender.start()
                sender.join()
            stop_file.touch()
            poller.join(timeout=300)
            cpu = {s.name: cpu_seconds(s.process.pid) - cpu[s.name] for s in services if s.process}
            peaks.stopped.set()
            peaks.join()
        finally:
            for service in services:
                service.stop()
    sender = json.loads(sent.read_text())
    requests = sender["requests"]
    observed = json.loads(polled.read_text())
    ok = [r for r in requests if r["status"] == 201]
    late = sorted((r["sent"] - r["scheduled"]) * 1000 for r in requests)
    offered = len(requests) / (max(r["sent"] for r in requests) - min(r["sent"] for r in requests))
    span = max(r["done"] for r in requests) - min(r["sent"] for r in requests)
    response_ms = [(r["done"] - r["sent"]) * 1000 for r in ok]
    p50, p99, top = quantiles(response_ms)
    figures.append(
        Figure(
            f"registration response at {rate:g}/s open loop (p50 / p99)",
            p50,
            "ms",
            note=f"p99 {p99:.0f} ms, max {top:.0f} ms; {len(ok)} of {len(requests)} answered"
            f" 201 in {span:.1f} s; sent at {offered:.0f}/s, late on the schedule by p99"
            f" {quantiles(late)[1]:.0f} ms (max {late[-1]:.0f}); the sender used"
            f" {sender['cpu'] / len(requests) * 1000:.1f} ms CPU a request",
        )
    )
    figures.append(
        Figure(
            f"registrations answered per second at {rate:g}/s offered",
            len(ok) / span,
            "registrations/s",
            note="first request sent to last response; below the offered rate, the service"
            " is saturated and the lag includes its queue",
        )
    )
    log = observed["log"]
    query_ms = [q * 1000 for q in observed["queries"]]
    for name, table in VIEWS.items():
        found = observed["views"][table]
        lags = [(found[r["id"]] - log[r["id"]]) * 1000 for r in ok if r["id"] in found]
        response_lags = [(found[r["id"]] - r["done"]) * 1000 for r in ok if r["id"] in found]
        p50, p99, top = quantiles(lags)
        figures.append(
            Figure(
                f"commit → {name} at {rate:g}/s, p99",
                p99,
                "ms",
                target=f"p99 ≤ {TARGET_MS:g} ms at 100/s",
                met=p99 <= TARGET_MS if rate >= 100 else None,
                note=f"p50 {p50:.0f} ms, max {top:.0f} ms over {len(lags)} registrations"
                f" (from the HTTP response instead: p50 {quantiles(response_lags)[0]:.0f},"
                f" p99 {quantiles(response_lags)[1]:.0f} ms); polled every {poll_ms:g} ms,"
                f" a poll took p50 {quantiles(query_ms)[0]:.1f} ms,"
                f" p99 {quantiles(query_ms)[1]:.1f} ms",
            )
        )
    waiting = observed["waiting"]
    figures.append(
        Figure(
            f"saves waiting for registration_events' table lock at {rate:g}/s (mean)",
            statistics.fmean(waiting),
            "saves",
            note=f"max {max(waiting)}; waiting in {sum(1 for w in waiting if w) / len(waiting):.0%}"
            f" of {len(waiting):,} polls (pg_locks, not granted)",
        )
    )
    holders = observed["holders"]
    share = {state: holders.count(state) / len(holders) for state in set(holders)}
    figures.append(
        Figure(
            f"registration_events' table lock held, holder waiting for its client, at {rate:g}/s",
            share.get("idle in transaction", 0.0) * 100,
            "% of polls",
            note=f"held with its holder active in the server {share.get('active', 0.0):.0%},"
            f" free {share.get('free', 0.0):.0%} (pg_locks and pg_stat_activity each poll)",
        )
    )
    for service in services:
        figures.append(
            Figure(
                f"{service.name} CPU per registration at {rate:g}/s",
                cpu[service.name] / len(ok) * 1000,
                "ms",
                note=f"{cpu[service.name]:.1f} CPU seconds (/proc, user + system) from the first"
                " request until the views had every registration",
            )
        )
        figures.append(Figure(f"{service.name} RSS at rest", at_rest[service.name] / 2**20, "MiB"))
        figures.append(
            Figure(
                f"{service.name} RSS peak at {rate:g}/s",
                peaks.peaks[service.name] / 2**20,
                "MiB",
                note=f"sampled every 0.25 s over the {seconds:g} s run",
            )
        )
    print(f"(service logs in {logs})")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="registrations per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds at rest before RSS")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--results", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy: registration's CPU, by stack")
    args = parser.parse_args()
    figures = run(
        args.database_url,
        rate=args.rate,
        seconds=args.seconds,
        partners=args.partners,
        idle=args.idle,
        poll_ms=args.poll_ms,
        profile=args.profile,
    )
    record(figures, args.results, "python -m bench.lag " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
