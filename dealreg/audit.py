"""`dealreg audit`: prove the logs intact, replay them, follow an entity through every service."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from psycopg import sql
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from dealreg.catalogue import SERVICES
from dealreg.whatif import what_if
from shared.audit.causes import AUDIT_KEY, caused_by, caused_by_operator
from shared.audit.chain import Checkpoint, Verification, verify_chain
from shared.audit.index import ACTOR, CORRELATION, CUSTOMER, index_table
from shared.codec import build_transcoder
from shared.contracts import LogCheckpointed
from shared.database import Database, open_database
from shared.settings import ServiceSettings

audit = typer.Typer(
    help="For auditors: verify the hash chains, replay every projection, trace a history.",
    no_args_is_help=True,
)

_stderr = Console(stderr=True)
_transcoder = build_transcoder()


def _database() -> Database:
    return open_database(ServiceSettings())


def _services(only: list[str] | None) -> list[str]:
    unknown = sorted(set(only or []) - set(SERVICES))
    if unknown:
        raise typer.BadParameter(f"unknown service {unknown}; one of {', '.join(SERVICES)}")
    return [name for name in SERVICES if not only or name in only]


ServicesOption = Annotated[
    list[str] | None, typer.Option("--service", help="Only this service's log (repeatable)")
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_stderr,
        transient=False,
    )


def _advancing(progress: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda n: progress.advance(task, n)


# --- verify ------------------------------------------------------------------------------------


def published_checkpoints(database: Database, log: str) -> list[Checkpoint]:
    """The checkpoints the log itself recorded (and delivered to whoever subscribed)."""
    table = sql.SQL("{}.{}").format(
        sql.Identifier(database.schema), sql.Identifier(f"{log}_events")
    )
    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT notification_id, state FROM {} WHERE topic = %s").format(table),
            (LogCheckpointed.event_name,),
        ).fetchall()
    found = []
    for position, state in rows:
        data = _transcoder.decode(bytes(state))
        found.append(
            Checkpoint(
                log, data["through_position"], data["chain_hash"], f"{log}#{position} (the log)"
            )
        )
    return found


def kept_checkpoints(specs: list[str], files: list[Path]) -> list[Checkpoint]:
    """Checkpoints kept elsewhere: ``log:position:hash`` given by hand, or NDJSON files of
    ``LogCheckpointed`` events (an export, or webhook bodies as received)."""
    found = []
    for spec in specs:
        try:
            log, position, digest = spec.split(":")
            found.append(Checkpoint(log, int(position), digest.lower(), "the command line"))
        except ValueError as error:
            raise typer.BadParameter(f"{spec!r} is not log:position:hash") from error
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("type") != LogCheckpointed.event_name:
                continue
            data = record.get("data", {})
            log = record.get("log") or data.get("log")
            if log is None:
                raise typer.BadParameter(f"{path}:{number}: a checkpoint without its log")
            found.append(
                Checkpoint(log, data["through_position"], data["chain_hash"], f"{path}:{number}")
            )
    return found


@audit.command()
def verify(
    service: ServicesOption = None,
    checkpoint: Annotated[
        list[str] | None, typer.Option(help="A checkpoint kept elsewhere: log:position:hash")
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(help="NDJSON of LogCheckpointed events kept elsewhere", exists=True),
    ] = None,
) -> None:
    """Recompute each log's hash chain; name the first position changed, inserted, deleted or
    reordered (exit 1), or confirm each log intact (exit 0)."""
    database = _database()
    kept = kept_checkpoints(checkpoint or [], checkpoints or [])
    results: list[Verification] = []
    with _progress() as progress:
        for log in _services(service):
            task = progress.add_task(f"verifying {log}", total=None)
            results.append(
                verify_chain(
                    database.url,
                    database.schema,
                    log,
                    checkpoints=[*published_checkpoints(database, log), *kept],
                    progress=_advancing(progress, task),
                )
            )
            progress.update(task, total=results[-1].events, completed=results[-1].events)
    for result in results:
        typer.echo(
            json.dumps(
                {
                    "log": result.log,
                    "intact": result.intact,
                    "events": result.events,
                    "head": result.head.__dict__ if result.head and result.intact else None,
                    "checkpoints_checked": result.checkpoints_checked,
                    "first_break": result.first_break.__dict__ if result.first_break else None,
                }
            )
        )
    if not all(result.intact for result in results):
        raise typer.Exit(1)


# --- replay ------------------------------------------------------------------------------------


@audit.command()
def replay(
    service: ServicesOption = None,
    schema: Annotated[str, typer.Option(help="Scratch schema to rebuild into")] = "audit_replay",
    keep: Annotated[bool, typer.Option(help="Keep the scratch schema to inspect it")] = False,
) -> None:
    """Rebuild every projection of every service from the logs into a scratch schema and
    compare it, table by table and row by row, with the live one (exit 1 on any difference)."""
    reports = []
    with caused_by(caused_by_operator("audit replay")), _progress() as progress:
        for name in _services(service):
            runtime = SERVICES[name].build_runtime()
            try:
                if schema == runtime.schema:
                    raise typer.BadParameter("the scratch schema must not be the live one")
                task = progress.add_task(f"replaying {name}", total=runtime.rebuild_size())
                reports.append(runtime.rebuild(schema, progress=_advancing(progress, task)))
                if not keep:
                    _drop_schema(runtime.database_url, schema)
            finally:
                runtime.close()
    identical = True
    for report in reports:
        differing = [d for d in report.differences if d.only_live or d.only_rebuilt]
        identical = identical and not differing
        typer.echo(
            json.dumps(
                {
                    "service": report.service,
                    "events_applied": report.events_applied,
                    "tables_compared": len(report.differences),
                    "identical": not differing,
                    "differences": [d.__dict__ for d in differing],
                },
                default=str,
            )
        )
    if not identical:
        raise typer.Exit(1)


def _drop_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- history -----------------------------------------------------------------------------------


@audit.command()
def history(
    key: Annotated[str, typer.Argument(help="An entity id (or see the options)")],
    customer: Annotated[bool, typer.Option(help="KEY is a customer's matching key")] = False,
    correlation: Annotated[bool, typer.Option(help="KEY is a correlation id")] = False,
    actor: Annotated[bool, typer.Option(help="KEY is an actor (a token's subject)")] = False,
    service: ServicesOption = None,
) -> None:
    """Everything every service recorded about an entity (or a customer, or under a correlation
    id, or by an actor), merged in the order it was recorded, one JSON event per line."""
    prefixes = [
        p
        for p, chosen in ((CUSTOMER, customer), (CORRELATION, correlation), (ACTOR, actor))
        if chosen
    ]
    if len(prefixes) > 1:
        raise typer.BadParameter("one of --customer, --correlation or --actor")
    indexed = (prefixes[0] if prefixes else "") + key
    database = _database()
    events = sorted(
        (event for log in _services(service) for event in _history(database, log, indexed)),
        key=lambda event: (event["recorded_at"] or "", event["log"], event["position"]),
    )
    for event in events:
        sys.stdout.write(json.dumps(event, default=str) + "\n")


def _history(database: Database, log: str, key: str) -> Iterator[dict[str, Any]]:
    def table(name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(database.schema), sql.Identifier(name))

    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"
                " FROM {} i JOIN {} e ON e.notification_id = i.position"
                " WHERE i.key = %s ORDER BY i.position"
            ).format(table(index_table(log)), table(f"{log}_events")),
            (key,),
        ).fetchall()
    for position, stream, version, topic, state in rows:
        data = _transcoder.decode(bytes(state))
        yield {
            "log": log,
            "position": position,
            "stream_id": stream,
            "stream_version": version,
            "type": topic,
            "recorded_at": data.pop("timestamp", None),
            "cause": data.pop(AUDIT_KEY, {}),
            "data": data,
        }


audit.command("what-if")(what_if)
