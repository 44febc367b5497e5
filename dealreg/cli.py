"""The `dealreg` command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import typer

from dealreg.audit import audit
from dealreg.catalogue import SERVICES, ServiceEntry
from dealreg.followers import followers
from shared.audit.causes import caused_by, caused_by_operator
from shared.auth import Role, development_subject, mint_token
from shared.contracts import schemas
from shared.runtime import WorkerIsRunningError
from shared.settings import ServiceSettings

cli = typer.Typer(
    help="dealreg: event-sourced deal registration for channel partner programs.",
    no_args_is_help=True,
    add_completion=False,
)
cli.add_typer(audit, name="audit")
cli.add_typer(followers, name="followers")

ServiceName = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]


def _entry(name: str) -> ServiceEntry:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return SERVICES[name]


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port_offset: Annotated[
        int, typer.Option(help="Added to the ports 8001-8003, to run beside another copy")
    ] = 0,
) -> None:
    """Start all three services (embedded PostgreSQL unless DATABASE_URL is set)."""
    from dealreg.supervisor import run_all

    raise typer.Exit(run_all(host, ServiceSettings(), port_offset=port_offset))


@cli.command()
def serve(
    service: ServiceName,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: the service's own port")] = None,
) -> None:
    """Run one service in this process."""
    import uvicorn

    from shared.web import configure_logging

    entry = _entry(service)
    settings = entry.settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        entry.factory,
        factory=True,
        host=host,
        port=port or entry.port,
        log_config=None,
        access_log=True,
        server_header=False,  # what serves the API is nobody's business (OWASP API8)
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )


@cli.command()
def token(
    role: Annotated[Role, typer.Argument(help="The role the token grants")],
    partner_id: Annotated[UUID | None, typer.Option(help="Required for the partner role")] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="Who the token is for; default: dev-<role>[-<partner id>]"),
    ] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 8 * 3600,
) -> None:
    """Mint a token signed with the configured (or development) secret."""
    settings = ServiceSettings()
    secret = settings.resolved_jwt_secret()
    if not secret:
        typer.echo(
            "no secret to sign with: set DEALREG_JWT_SECRET, or run `dealreg run` once", err=True
        )
        raise typer.Exit(2)
    try:
        typer.echo(
            mint_token(
                secret,
                role,
                subject=subject or development_subject(role, partner_id),
                partner_id=partner_id,
                ttl_seconds=ttl,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
            )
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


@cli.command()
def clock(
    service: ServiceName,
    until: Annotated[datetime, typer.Option(help="ISO 8601 instant; UTC if no zone is given")],
) -> None:
    """Run a service's clock up to an instant (twice to the same instant decides nothing new)."""
    instant = until if until.tzinfo else until.replace(tzinfo=UTC)
    runtime = _entry(service).build_runtime()
    try:
        with caused_by(caused_by_operator("clock")):
            result = runtime.clock.advance(instant)
    finally:
        runtime.close()
    typer.echo(
        json.dumps(
            {
                "service": result.service,
                "previous": result.previous.isoformat() if result.previous else None,
                "now": result.now.isoformat(),
                "decisions": result.decisions,
            }
        )
    )


@cli.command()
def rebuild(
    service: ServiceName,
    into: Annotated[
        str | None,
        typer.Option(help="Rebuild into this schema and compare with the live projections"),
    ] = None,
) -> None:
    """Rebuild a service's projections from the logs (in place, or beside them to compare)."""
    runtime = _entry(service).build_runtime()
    try:
        report = runtime.rebuild(into)
    except WorkerIsRunningError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(3) from error
    finally:
        runtime.close()
    typer.echo(
        json.dumps(
            {
                "service": report.service,
                "schema": report.schema,
                "events_applied": report.events_applied,
                "identical": report.identical,
                "differences": [d.__dict__ for d in report.differences],
            },
            default=str,
        )
    )
    if not report.identical:
        raise typer.Exit(1)


@cli.command("schemas")
def print_schemas() -> None:
    """Print the JSON schema of every published event."""
    typer.echo(json.dumps(schemas(), indent=2, default=str))


def main() -> None:
    cli(prog_name="dealreg")


if __name__ == "__main__":
    main()
