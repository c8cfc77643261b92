"""Findings: what a rule concluded, as data.

A finding carries the numbers in its summary and a small evidence table; the
report decides how to show it.  Rules are plain functions from frames to a
list of findings, one module per topic in this package.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SEVERITIES", "Finding"]

SEVERITIES = ("info", "warning", "critical")


@dataclass
class Finding:
    id: str
    severity: str
    title: str
    summary: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    recommendation: str = ""
    references: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
