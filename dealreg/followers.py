"""`dealreg followers`: see the events a follower is stuck at, and retry or skip them.

Decisions go to the table the followers read (``shared.stuck_events``): the replica leading a
stuck follower picks one up within a second, and a service that is not running, when it starts.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Annotated

import typer

from shared.database import open_database
from shared.settings import ServiceSettings
from shared.stuck_events import StuckEvent, StuckEvents

followers = typer.Typer(
    help="For operators: events a follower cannot apply, and what to do with them.",
    no_args_is_help=True,
)

FollowerName = Annotated[
    str, typer.Argument(help="As listed, e.g. 'tiering_members<-tiering' (quote it)")
]
By = Annotated[str | None, typer.Option(help="Who decides (recorded); default: your login")]


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's user may have no name
        return f"uid {os.getuid()}"


def _stuck_events() -> StuckEvents:
    return StuckEvents(open_database(ServiceSettings()))


def _print(events: list[StuckEvent]) -> None:
    typer.echo(json.dumps([event.as_json() for event in events], indent=2))


def _decided(events: list[StuckEvent], follower: str, store: StuckEvents) -> None:
    if not events:
        stuck = ", ".join(f"{e.follower} at {e.position}" for e in store.unresolved()) or "none"
        typer.echo(f"{follower} is not stuck at such an event (stuck: {stuck})", err=True)
        raise typer.Exit(2)
    _print(events)


@followers.command("list")
def list_stuck(
    every: Annotated[
        bool, typer.Option("--all", help="Also the events resolved: applied or skipped")
    ] = False,
) -> None:
    """The events followers are stuck at (with --all, also those resolved, skips with reasons);
    exits 1 while any follower is stuck."""
    store = _stuck_events()
    events = store.every() if every else store.unresolved()
    _print(events)
    if any(event.passed_at is None for event in events):
        raise typer.Exit(1)


@followers.command()
def retry(
    follower: FollowerName,
    position: Annotated[int | None, typer.Option(help="Only if stuck at this position")] = None,
    by: By = None,
) -> None:
    """Try the event again, once its cause is fixed (a new release, a repaired view)."""
    store = _stuck_events()
    _decided(store.decide(follower, "retry", by=_who(by), position=position), follower, store)


@followers.command()
def skip(
    follower: FollowerName,
    position: Annotated[int, typer.Option(help="The log position it is stuck at")],
    reason: Annotated[str, typer.Option(help="Why figures may leave this event out (kept)")],
    by: By = None,
) -> None:
    """Move past the event without applying it: what the follower keeps will not reflect it."""
    if not reason.strip():
        raise typer.BadParameter("say why the event may be left out", param_hint="--reason")
    store = _stuck_events()
    _decided(
        store.decide(follower, "skip", by=_who(by), reason=reason, position=position),
        follower,
        store,
    )
