"""The figures a benchmark measures, as one table: the value, the baseline measured in the same
run (where there is one) and the ratio, the target and whether it is met.

Every benchmark module prints its own figures and, with ``--results FILE``, adds them to a JSON
file; ``python -m bench.report FILE`` prints that file as the markdown table of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    """The same figure for the bare FastAPI + asyncpg endpoint, measured in the same run."""
    target: str = ""
    """What the issue asks, in words (``≥ 0.5x baseline``, ``p99 ≤ 250 ms``)."""
    met: bool | None = None
    note: str = ""
    """What limits it, or how it was measured."""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


@dataclass
class Results:
    machine: str = field(
        default_factory=lambda: (
            f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()},"
            f" Python {platform.python_version()}"
        )
    )
    figures: list[Figure] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    measured_at: str = field(default_factory=lambda: _now())

    @classmethod
    def load(cls, path: Path) -> Results:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        figures = [Figure(**figure) for figure in data.pop("figures")]
        return cls(**data, figures=figures)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        path.write_text(json.dumps(data, indent=2) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: Sequence[Figure]) -> str:
    lines = [
        "| figure | value | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|:---:|",
    ]
    for f in figures:
        baseline = f"{_number(f.baseline)} {f.unit}" if f.baseline is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        value = f"{_number(f.value)} {f.unit}"
        lines.append(f"| {f.name} | {value} | {baseline} | {ratio} | {f.target} | {met} |")
    return "\n".join(lines)


def record(figures: Sequence[Figure], results: Path | None, command: str) -> None:
    """Print figures as a table and, given a results file, add them to it (a figure of the same
    name replaces the older one)."""
    print(table(figures), flush=True)
    if results is None:
        return
    kept = Results.load(results)
    names = {f.name for f in figures}
    kept.figures = [f for f in kept.figures if f.name not in names] + list(figures)
    if command not in kept.commands:
        kept.commands.append(command)
    kept.measured_at = _now()
    kept.save(results)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a results file as markdown.")
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    results = Results.load(args.results)
    print(f"Machine: {results.machine}; measured {results.measured_at}.\n")
    print(table(results.figures))
    print("\nCommands:\n")
    for command in results.commands:
        print(f"    {command}")
    notes = [f for f in results.figures if f.note]
    if notes:
        print()
        for f in notes:
            print(f"- {f.name}: {f.note}")


if __name__ == "__main__":
    main()
