"""`dealreg audit what-if`: the history replayed under a draft policy, in this process, by both
services' engines on the logs (as `POST /v1/program/what-if` does over HTTP); nothing is
written."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dealreg.catalogue import SERVICES
from services.commissions.whatif import CommissionsWhatIf
from services.tiering.whatif import TieringWhatIf, WhatIfReport, compose_report, report_csv
from shared.policy import PolicyDocumentError, parse_policy
from shared.whatif import DraftCurrencyError, DraftPolicy


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


def replay(draft: DraftPolicy) -> WhatIfReport:
    """Tiering's replay, then commissions' with the tier changes it decided: each service's
    engine over its runtime, as its API would run it; one runtime open at a time (connections
    are few when the services run beside this command)."""
    tiering = SERVICES["tiering"].build_runtime()
    try:
        tiers = TieringWhatIf.of(tiering).run(draft)
    finally:
        tiering.close()
    asked = tiers.statements_request()
    commissions = SERVICES["commissions"].build_runtime()
    try:
        statements = CommissionsWhatIf.of(commissions).compare(
            draft, asked.tier_changes, asked.read_through
        )
    finally:
        commissions.close()
    return compose_report(tiers, statements)


def what_if(
    draft_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="The draft policy document, YAML (or JSON, by its .json suffix)",
        ),
    ],
    effective_on: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="The draft's first day (versions before it stay); default: it replaces every "
            "version from the beginning",
        ),
    ] = None,
    report_format: Annotated[
        ReportFormat, typer.Option("--format", help="JSON, or one flat CSV table")
    ] = ReportFormat.JSON,
    output: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Write the report there, not to stdout")
    ] = None,
) -> None:
    """Replay the history under a draft policy: per partner, the tier changes and the statement
    differences it would bring. Nothing is written to the logs."""
    media_type = "application/json" if draft_file.suffix.lower() == ".json" else "application/yaml"
    try:
        policy = parse_policy(draft_file.read_bytes(), media_type=media_type)
        report = replay(DraftPolicy(policy, effective_on.date() if effective_on else None))
    except (PolicyDocumentError, DraftCurrencyError) as error:
        typer.echo(f"{draft_file}: the draft cannot be replayed: {error}", err=True)
        raise typer.Exit(2) from error
    text = (
        report_csv(report)
        if report_format is ReportFormat.CSV
        else report.model_dump_json(indent=2) + "\n"
    )
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"{len(report.partners)} partners listed; report in {output}", err=True)
