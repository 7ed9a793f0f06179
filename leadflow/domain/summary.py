"""Run summaries: counts in, out and rejected with reasons, and step timings, for artifacts and the CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from leadflow.domain.channels import active_vocabulary, listed_unknown_channels

_DATE_BASIS = {
    "column": "decided by the column's values",
    "fallback": "the column leaves it open: --date-order / LEADFLOW_DATE_ORDER",
    "conflict": "the column holds both orders: --date-order / LEADFLOW_DATE_ORDER, the rest invalid",
    "no_dates": "no day/month dates in the first chunk",
}


def _rows(counts: dict[str, int]) -> str:
    """Markdown table rows of a count table ("none" when it is empty)."""
    return "".join(f"| {key} | {count} |\n" for key, count in counts.items()) or "| none | 0 |\n"


@dataclass
class IntakeSummary:
    """What one lead-intake run did with every row it read."""

    batch_id: str
    origin: str
    # The export profile the file was read with (`generic`: the generic header aliases alone).
    profile: str = "generic"
    # The time `--submitted-at` gave every row, if it did.
    submitted_at: str | None = None
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
    # Accepted rows that named no channel, by the channel they got (the file's --source-name, else `unknown`).
    channel_filled: dict[str, int] = field(default_factory=dict)
    # Accepted rows with a value that could not be parsed (kept raw in the payload), by FieldWarning code.
    field_warnings: dict[str, int] = field(default_factory=dict)
    # Accepted addresses with a non-ASCII local part: delivery needs a server that offers SMTPUTF8.
    emails_smtputf8: int = 0
    # The day/month order the date column was read in, and why (column, fallback, conflict, no_dates).
    date_order: dict[str, str] = field(default_factory=dict)
    # Channel values outside the channel vocabulary (folded), with how many accepted rows carried each.
    unknown_channels: dict[str, int] = field(default_factory=dict)
    channel_vocabulary: str = field(default_factory=lambda: active_vocabulary().version)
    enrichment: dict[str, int] = field(default_factory=dict)
    enrichment_calls: int = 0
    enrichment_failed_calls: int = 0
    fields_filled: dict[str, int] = field(default_factory=dict)
    leads_scored: int = 0
    scores_changed: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    score_bands: dict[str, int] = field(default_factory=dict)
    spam_flagged: int = 0
    spam_by_reason: dict[str, int] = field(default_factory=dict)
    qualification: dict[str, Any] = field(default_factory=dict)
    # The export's own CRM state: statuses imported, owners kept or routed as usual, opt-outs, unmapped values.
    crm_state: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntakeSummary:
        """Rebuild a summary from `as_dict` output (what the flow returns)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "checks"}
        return cls(**fields)

    def note_plan(self, profile: str, submitted_at: str | None) -> None:
        """Record how the input is read: its export profile and the time `--submitted-at` gave its rows."""
        self.profile, self.submitted_at = profile, submitted_at

    def add_time(self, step: str, seconds: float) -> None:
        """Add time spent in one step."""
        self.step_seconds[step] = round(self.step_seconds.get(step, 0.0) + seconds, 4)

    def add_reasons(self, reasons: Counter) -> None:
        """Count quarantine reasons."""
        merged = Counter(self.quarantined_by_reason)
        merged.update(reasons)
        self.quarantined_by_reason = dict(sorted(merged.items()))

    def add_counts(self, name: str, counts: Counter | dict[str, int]) -> None:
        """Add per-key counts to one of the summary's count tables (enrichment, tiers, score_bands, ...)."""
        merged = Counter(getattr(self, name))
        merged.update(counts)
        setattr(self, name, dict(sorted(merged.items())))

    def add_crm_state(self, counts: dict[str, Any]) -> None:
        """Fold one chunk's CRM-state counts in (each table keeps its 20 largest keys)."""
        for key, value in counts.items():
            if isinstance(value, dict):
                merged = Counter(self.crm_state.get(key, {}))
                merged.update(value)
                self.crm_state[key] = dict(sorted(merged.most_common(20)))
            else:
                self.crm_state[key] = self.crm_state.get(key, 0) + value

    @property
    def enrichment_rate(self) -> float | None:
        """Share of looked-up leads that a provider enriched (free-mail and domain-less leads are not looked up)."""
        looked_up = sum(self.enrichment.get(k, 0) for k in ("enriched", "not_found", "failed"))
        return round(self.enrichment.get("enriched", 0) / looked_up, 4) if looked_up else None

    def add_qualification(self, result: dict[str, Any]) -> None:
        """Fold one lead-qualification subflow run's summary in: counts add up, tables add up per key."""
        total = self.qualification
        for key, value in result.items():
            if isinstance(value, bool) or key in {"policy_version", "replay", "seconds", "step_seconds"}:
                if key == "policy_version":
                    total[key] = value
                continue
            if isinstance(value, int | float):
                total[key] = round(total.get(key, 0) + value, 3)
            elif isinstance(value, dict):
                merged = Counter(total.get(key, {}))
                merged.update({k: v for k, v in value.items() if isinstance(v, int | float)})
                total[key] = dict(sorted(merged.items()))
            elif isinstance(value, list):
                total[key] = [*total.get(key, []), *value][:20]
        total["runs"] = total.get("runs", 0) + 1

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
        data["unknown_channels"] = listed_unknown_channels(self.unknown_channels)
        data["leads_per_second"] = self.leads_per_second
        data["enrichment_rate"] = self.enrichment_rate
        return data

    def to_markdown(self) -> str:
        """The summary as a short markdown report for the Prefect UI."""
        reasons = "".join(f"| {code} | {count} |\n" for code, count in self.quarantined_by_reason.items())
        reasons = reasons or "| none | 0 |\n"
        steps = "".join(f"| {step} | {secs:.2f} |\n" for step, secs in self.step_seconds.items())
        enrichment, tiers, bands = _rows(self.enrichment), _rows(self.tiers), _rows(self.score_bands)
        rate = "n/a" if self.enrichment_rate is None else f"{self.enrichment_rate:.1%}"
        spam = _rows(self.spam_by_reason)
        return (
            f"# Lead intake: {self.origin}\n\n"
            f"{self._reading_markdown()}"
            f"| rows read | new submissions | known submissions | leads created | leads updated "
            f"| attribution moved | quarantined | blank |\n|---|---|---|---|---|---|---|---|\n"
            f"| {self.rows_read} | {self.submissions_new} | {self.submissions_duplicate} | {self.leads_created} "
            f"| {self.leads_updated} | {self.sources_updated} | {self.quarantined} | {self.blank_rows} |\n\n"
            f"## Quarantined by reason\n\n| reason | rows |\n|---|---|\n{reasons}\n"
            f"## Rows without a channel\n\n| channel given | rows |\n|---|---|\n{_rows(self.channel_filled)}\n"
            f"{self._fields_markdown()}"
            f"{self._channels_markdown()}"
            f"## Lead details (enrichment rate {rate}, {self.enrichment_calls} provider calls, "
            f"{self.enrichment_failed_calls} failed)\n\n| enrichment status | leads |\n|---|---|\n{enrichment}\n"
            f"## Scores ({self.leads_scored} scored, {self.scores_changed} changed)\n\n"
            f"| tier | leads |\n|---|---|\n{tiers}\n| score | leads |\n|---|---|\n{bands}\n"
            f"## Spam flagged at intake ({self.spam_flagged})\n\n| reason | leads |\n|---|---|\n{spam}\n"
            f"{self._qualification_markdown()}"
            f"## Timings ({self.seconds:.2f} s, {self.leads_per_second} rows/s)\n\n"
            f"| step | seconds |\n|---|---|\n{steps}\n"
            f"Batch `{self.batch_id}`, {self.chunks} chunk(s).\n"
        )

    def _reading_markdown(self) -> str:
        given = f"; every row dated {self.submitted_at} by `--submitted-at`" if self.submitted_at else ""
        return f"Read with export profile **{self.profile}**{given}.\n\n"

    def _fields_markdown(self) -> str:
        order = self.date_order
        dates = (f"Dates read as {order.get('order')} ({_DATE_BASIS.get(order.get('basis', ''), order.get('basis'))})."
                 if order else "Dates: no column order decided.")
        return (f"## Field warnings (kept raw, not quarantined)\n\n| warning | rows |\n|---|---|\n"
                f"{_rows(self.field_warnings)}\n{dates} Addresses needing SMTPUTF8: {self.emails_smtputf8}.\n\n")

    def _channels_markdown(self) -> str:
        if not self.unknown_channels:
            return ""
        listed = listed_unknown_channels(self.unknown_channels)
        return (f"## Channels outside the vocabulary {self.channel_vocabulary} (kept as typed, folded)\n\n"
                f"| channel | rows |\n|---|---|\n{_rows(listed)}\n")

    def _qualification_markdown(self) -> str:
        q = self.qualification
        if not q:
            return "## Qualification\n\nNot run (no new or changed leads, or `qualify=False`).\n\n"
        return (
            f"## Qualification ({q.get('leads', 0)} leads in {q.get('runs', 0)} lead-qualification run(s))\n\n"
            f"| priority | leads |\n|---|---|\n{_rows(q.get('by_priority', {}))}\n"
            f"Accounts created {q.get('accounts_created', 0)}, tasks {q.get('tasks_created', {})}, "
            f"messages queued {q.get('messages_queued', {})}, delivered {q.get('delivered', 0)}.\n\n"
        )

    def to_text(self) -> str:
        """The summary for a terminal."""
        lines = [
            f"Lead intake of {self.origin} ({self.seconds:.1f} s, {self.leads_per_second} rows/s)",
            f"  export profile       {self.profile}",
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
        if self.submitted_at:
            lines.append(f"  dated by option      {self.submitted_at} (--submitted-at)")
        if self.channel_filled:
            lines.append(f"  without a channel    {sum(self.channel_filled.values())}")
            lines += [f"    {channel:<22} {count}" for channel, count in self.channel_filled.items()]
        if self.field_warnings:
            lines.append(f"  field warnings       {sum(self.field_warnings.values())} (kept raw, not quarantined)")
            lines += [f"    {code:<22} {count}" for code, count in self.field_warnings.items()]
        if self.date_order:
            basis = _DATE_BASIS.get(self.date_order.get("basis", ""), self.date_order.get("basis"))
            lines.append(f"  dates read as        {self.date_order.get('order')} ({basis})")
        if self.emails_smtputf8:
            lines.append(f"  need SMTPUTF8        {self.emails_smtputf8} (internationalized addresses)")
        if self.unknown_channels:
            lines.append(f"  unknown channels     {sum(self.unknown_channels.values())} rows (kept; add them to a "
                         "channel map, LEADFLOW_CHANNEL_MAP)")
            listed = listed_unknown_channels(self.unknown_channels)
            lines += [f"    {name:<22} {count}" for name, count in listed.items()]
        rate = "n/a" if self.enrichment_rate is None else f"{self.enrichment_rate:.1%}"
        lines.append(f"  enrichment           {rate} enriched of looked up")
        lines += [f"    {status:<22} {count}" for status, count in self.enrichment.items()]
        lines.append(f"  leads scored         {self.leads_scored} ({self.scores_changed} changed)")
        lines += [f"    {tier:<22} {count}" for tier, count in self.tiers.items()]
        if self.spam_flagged:
            lines.append(f"  flagged as spam      {self.spam_flagged}")
        for key, value in self.crm_state.items():
            if isinstance(value, dict):
                lines.append(f"  crm {key}")
                lines += [f"    {k:<22} {n}" for k, n in value.items()]
            else:
                lines.append(f"  crm {key:<17}{value}")
        q = self.qualification
        if q:
            created = q.get("accounts_created", 0)
            lines.append(f"  qualified            {q.get('leads', 0)} (accounts created {created})")
            lines += [f"    {p:<22} {count}" for p, count in q.get("by_priority", {}).items()]
            lines.append(f"  tasks created        {sum(q.get('tasks_created', {}).values())}")
            queued = sum(q.get("messages_queued", {}).values())
            lines.append(f"  messages queued      {queued} (delivered {q.get('delivered', 0)})")
            for why, n in q.get("messages_held_back", {}).items():
                lines.append(f"    held back: {why:<11} {n} leads")
            if q.get("skipped_closed"):
                lines.append(f"  converted or closed  {q['skipped_closed']} (not routed, no task, no message)")
            waiting = queued - q.get("delivered", 0) - q.get("delivery_failed", 0)
            if waiting > 0:
                lines.append(f"    waiting in outbox    {waiting}: the outbox-delivery deployment or "
                             "`leadflow outbox deliver` sends them")
        return "\n".join(lines)


@dataclass
class QualificationSummary:
    """What one qualification run did, for the summary artifact and the CLI."""

    leads: int = 0
    skipped_spam: int = 0
    # Converted or closed leads (the status map's closed statuses): never routed, tasked or messaged.
    skipped_closed: int = 0
    # Leads recorded as history (their triggering submission older than the freshness window).
    historical: int = 0
    # Leads whose auto-response and rep alert were held back, by why (see leadflow/domain/crm_state.py).
    messages_held_back: dict[str, int] = field(default_factory=dict)
    # Leads not ready (spam check, details or score still missing: leadflow/domain/progress.py), left out.
    skipped_unscored: int = 0
    # Leads whose qualification a killed run left before its tasks and messages, finished by this run.
    resumed: int = 0
    replay: bool = False
    policy_version: str = ""
    by_priority: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, int] = field(default_factory=dict)
    checklist_passed: int = 0
    matches_by_band: dict[str, int] = field(default_factory=dict)
    accounts_created: int = 0
    leads_linked: int = 0
    priorities_changed: int = 0
    assignments_by_rep: dict[str, int] = field(default_factory=dict)
    assignments_by_rule: dict[str, int] = field(default_factory=dict)
    newly_assigned: int = 0
    newly_queued: int = 0
    tasks_created: dict[str, int] = field(default_factory=dict)
    messages_queued: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    delivery_failed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, step: str, seconds: float) -> None:
        """Add the time one step took (summed over batches)."""
        self.step_seconds[step] = round(self.step_seconds.get(step, 0.0) + seconds, 3)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """The run at a glance, for the Prefect UI (counts only, no personal data)."""
        def table(title: str, counts: dict[str, int]) -> str:
            rows = "\n".join(f"| {k} | {v:,} |" for k, v in sorted(counts.items())) or "| none | 0 |"
            return f"| {title} | leads |\n|---|---:|\n{rows}\n"

        head = (f"# Lead qualification{' (replay: no messages)' if self.replay else ''}\n\n"
                f"Policy {self.policy_version}: {self.leads:,} leads qualified ({self.resumed:,} resumed), "
                f"{self.skipped_spam:,} spam skipped, {self.skipped_unscored:,} not yet scored skipped, "
                f"{self.checklist_passed:,} passed the checklist, {self.accounts_created:,} accounts created, "
                f"{self.newly_assigned:,} newly assigned, {self.newly_queued:,} put in the fallback queue, "
                f"{self.delivered:,} messages delivered, {self.delivery_failed:,} failed. ({self.seconds:.2f} s)\n\n"
                f"{self.skipped_closed:,} converted or closed leads skipped; {self.historical:,} leads older than the "
                f"freshness window recorded as history.\n\n")
        parts = [table("priority", self.by_priority), table("tier", self.by_tier),
                 table("match band", self.matches_by_band), table("assignment rule", self.assignments_by_rule),
                 table("rep", self.assignments_by_rep), table("task kind (created)", self.tasks_created),
                 table("message kind (queued)", self.messages_queued),
                 table("messages held back (why)", self.messages_held_back)]
        failures = "\n".join(f"- {f}" for f in self.failures) or "none"
        return head + "\n".join(parts) + f"\n## Failures\n\n{failures}\n"


def counts(values: pd.Series) -> dict[str, int]:
    """Value counts as a plain dict (NA counted as 'none')."""
    out: dict[str, int] = {}
    for key, n in values.value_counts(dropna=False).items():  # counted in the column's own dtype: no object copy
        name = "none" if pd.isna(key) else str(key)
        out[name] = out.get(name, 0) + int(n)
    return out


def add(target: dict[str, int], key: str, n: int) -> None:
    """Add n to a counter dict."""
    target[key] = target.get(key, 0) + n
