"""Run summaries: counts in, out and rejected with reasons, and step timings, for artifacts and the CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class IntakeSummary:
    """What one lead-intake run did with every row it read."""

    batch_id: str
    origin: str
    rows_read: int = 0
    blank_rows: int = 0
    submissions_new: int = 0
    submissions_duplicate: int = 0
    leads_created: int = 0
    leads_updated: int = 0
    sources_updated: int = 0
    quarantined: int = 0
    quarantined_new: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntakeSummary:
        """Rebuild a summary from `as_dict` output (what the flow returns)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "checks"}
        return cls(**fields)

    def add_time(self, step: str, seconds: float) -> None:
        """Add time spent in one step."""
        self.step_seconds[step] = round(self.step_seconds.get(step, 0.0) + seconds, 4)

    def add_reasons(self, reasons: Counter) -> None:
        """Count quarantine reasons."""
        merged = Counter(self.quarantined_by_reason)
        merged.update(reasons)
        self.quarantined_by_reason = dict(sorted(merged.items()))

    def add_check_results(self, results: list[dict[str, Any]]) -> None:
        """Fold one chunk's per-expectation results into run totals."""
        for row in results:
            key = f"{row['expectation']}({row['column']})" if row.get("column") else row["expectation"]
            total = self.checks.setdefault(
                key, {"expectation": row["expectation"], "column": row.get("column"),
                      "reason_code": row.get("reason_code"), "unexpected": 0, "success": True}
            )
            total["unexpected"] += int(row.get("unexpected_count") or 0)
            total["success"] = total["success"] and bool(row["success"])

    @property
    def accounted(self) -> int:
        """Rows that ended up somewhere: new or known submission, quarantine, or skipped as blank."""
        return self.submissions_new + self.submissions_duplicate + self.quarantined + self.blank_rows

    @property
    def leads_per_second(self) -> float:
        """Throughput of the run."""
        return round(self.rows_read / self.seconds, 1) if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data."""
        data = asdict(self)
        data["checks"] = list(self.checks.values())
        data["leads_per_second"] = self.leads_per_second
        return data

    def to_markdown(self) -> str:
        """The summary as a short markdown report for the Prefect UI."""
        reasons = "".join(f"| {code} | {count} |\n" for code, count in self.quarantined_by_reason.items())
        reasons = reasons or "| none | 0 |\n"
        steps = "".join(f"| {step} | {secs:.2f} |\n" for step, secs in self.step_seconds.items())
        return (
            f"# Lead intake: {self.origin}\n\n"
            f"| rows read | new submissions | known submissions | leads created | leads updated "
            f"| attribution moved | quarantined | blank |\n|---|---|---|---|---|---|---|---|\n"
            f"| {self.rows_read} | {self.submissions_new} | {self.submissions_duplicate} | {self.leads_created} "
            f"| {self.leads_updated} | {self.sources_updated} | {self.quarantined} | {self.blank_rows} |\n\n"
            f"## Quarantined by reason\n\n| reason | rows |\n|---|---|\n{reasons}\n"
            f"## Timings ({self.seconds:.2f} s, {self.leads_per_second} rows/s)\n\n"
            f"| step | seconds |\n|---|---|\n{steps}\n"
            f"Batch `{self.batch_id}`, {self.chunks} chunk(s).\n"
        )

    def to_text(self) -> str:
        """The summary for a terminal."""
        lines = [
            f"Lead intake of {self.origin} ({self.seconds:.1f} s, {self.leads_per_second} rows/s)",
            f"  rows read            {self.rows_read}",
            f"  new submissions      {self.submissions_new}",
            f"  known submissions    {self.submissions_duplicate}",
            f"  leads created        {self.leads_created}",
            f"  leads updated        {self.leads_updated}",
            f"  attribution moved    {self.sources_updated}",
            f"  blank rows skipped   {self.blank_rows}",
            f"  quarantined          {self.quarantined}",
        ]
        lines += [f"    {code:<22} {count}" for code, count in self.quarantined_by_reason.items()]
        return "\n".join(lines)
