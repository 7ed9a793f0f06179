"""The daily health of the pipeline from one day's aggregates: pure shaping, no personal data in or out.

The nightly maintenance flow reads yesterday (in LEADFLOW_TIMEZONE) and publishes this as a Prefect artifact, so
ops see volume, speed to lead, SLA breaches, the unassigned queue, the outbox and the quarantine without SQL.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd


def day_window(now: datetime, timezone: str) -> tuple[str, datetime, datetime]:
    """Yesterday in `timezone` as (YYYY-MM-DD, start, end), start and end in UTC (a DST day has 23 or 25 hours)."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    day = today - timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = datetime(today.year, today.month, today.day, tzinfo=zone)
    return day.isoformat(), start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


def median_p90(seconds: pd.Series) -> tuple[float | None, float | None]:
    """Median and 90th percentile (linear interpolation) of durations in seconds; None for no durations."""
    values = pd.to_numeric(seconds, errors="coerce").dropna()
    if values.empty:
        return None, None
    return round(float(values.quantile(0.5)), 1), round(float(values.quantile(0.9)), 1)


def duration_text(seconds: float | None) -> str:
    """A duration as people read it: `42s`, `4m 12s`, `3h 05m`, `2d 4h`; `–` for none."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86_400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86_400}d {whole % 86_400 // 3600}h"


@dataclass
class SpeedToLead:
    """Submission (the lead's first touch) to its rep alert: queued and sent, for alerts queued in the day."""

    alerts: int = 0
    queued_median_s: float | None = None
    queued_p90_s: float | None = None
    sent: int = 0
    sent_median_s: float | None = None
    sent_p90_s: float | None = None


def speed_to_lead(alerts: pd.DataFrame) -> SpeedToLead:
    """Speed to lead from rep alerts (first_touch_at, queued_at, sent_at); times before the touch count as 0."""
    result = SpeedToLead(alerts=len(alerts))
    if alerts.empty:
        return result
    queued = (alerts["queued_at"] - alerts["first_touch_at"]).dt.total_seconds().clip(lower=0)
    result.queued_median_s, result.queued_p90_s = median_p90(queued)
    sent = (alerts["sent_at"] - alerts["first_touch_at"]).dt.total_seconds().clip(lower=0).dropna()
    result.sent = len(sent)
    result.sent_median_s, result.sent_p90_s = median_p90(sent)
    return result


@dataclass
class SlaOutcome:
    """Tasks due in the day: met (done by their due time), breached (done late, or still open), by kind."""

    due: int = 0
    met: int = 0
    breached: int = 0
    breached_by_kind: dict[str, int] = field(default_factory=dict)


def sla_outcome(tasks: pd.DataFrame, now: datetime) -> SlaOutcome:
    """SLA results of tasks due in the day (kind, due_at, completed_at, status); an open task past due breached."""
    if tasks.empty:
        return SlaOutcome()
    done = tasks["completed_at"].notna()
    late = done & (tasks["completed_at"] > tasks["due_at"])
    overdue = ~done & tasks["status"].eq("open") & (tasks["due_at"] < pd.Timestamp(now))
    breached = late | overdue
    met = done & ~late
    return SlaOutcome(due=len(tasks), met=int(met.sum()), breached=int(breached.sum()),
                      breached_by_kind={str(k): int(v) for k, v in
                                        sorted(Counter(tasks.loc[breached, "kind"]).items())})


@dataclass
class OutboxHealth:
    """The outbox now: backlog (pending and sending, and the oldest pending's age) and failures."""

    pending: int = 0
    sending: int = 0
    failed: int = 0
    oldest_pending_s: float | None = None
    failed_in_day: int = 0
    pending_by_kind: dict[str, int] = field(default_factory=dict)
    failed_in_day_by_kind: dict[str, int] = field(default_factory=dict)


def outbox_health(outbox: pd.DataFrame, failed_in_day: pd.DataFrame, now: datetime) -> OutboxHealth:
    """Backlog and failures from outbox counts (status, kind, messages, oldest) and the day's failures (kind)."""
    result = OutboxHealth()
    by_status = outbox.groupby("status")["messages"].sum() if len(outbox) else pd.Series(dtype="int64")
    result.pending, result.sending, result.failed = (int(by_status.get(s, 0)) for s in ("pending", "sending",
                                                                                         "failed"))
    pending = outbox.loc[outbox["status"].eq("pending")] if len(outbox) else outbox
    if len(pending):
        result.oldest_pending_s = round(max((pd.Timestamp(now) - pending["oldest"].min()).total_seconds(), 0.0), 1)
        result.pending_by_kind = {str(k): int(v) for k, v in sorted(zip(pending["kind"], pending["messages"],
                                                                         strict=True))}
    if len(failed_in_day):
        result.failed_in_day_by_kind = {str(k): int(v) for k, v in sorted(zip(failed_in_day["kind"],
                                                                               failed_in_day["messages"], strict=True))}
        result.failed_in_day = sum(result.failed_in_day_by_kind.values())
    return result


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantined rows by reason code (a row with two reasons counts once under each)."""
    counts: Counter[str] = Counter()
    for codes, rows in zip(quarantine.get("reason_codes", []), quarantine.get("rows", []), strict=True):
        for code in str(codes).split(","):
            if code:
                counts[code] += int(rows)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class DailyHealth:
    """The pipeline's health for one day, as the artifact shows it."""

    day: str
    timezone: str
    start: str
    end: str
    submissions: int
    spam_submissions: int
    new_leads: int
    by_channel: dict[str, int]
    speed: SpeedToLead
    sla: SlaOutcome
    unassigned: int
    unassigned_by_priority: dict[str, int]
    outbox: OutboxHealth
    quarantined: int
    quarantine_by_reason: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain values for the flow's result and JSON."""
        return asdict(self)

    def table(self) -> list[dict[str, Any]]:
        """One row per figure (section, metric, value): the artifact's table, whose history the UI keeps."""
        rows = [("volume", "submissions", self.submissions), ("volume", "spam submissions", self.spam_submissions),
                ("volume", "new leads", self.new_leads)]
        rows += [("volume by channel", channel, n) for channel, n in self.by_channel.items()]
        s = self.speed
        rows += [("speed to lead", "rep alerts queued", s.alerts),
                 ("speed to lead", "queued: median", duration_text(s.queued_median_s)),
                 ("speed to lead", "queued: p90", duration_text(s.queued_p90_s)),
                 ("speed to lead", "rep alerts sent", s.sent),
                 ("speed to lead", "sent: median", duration_text(s.sent_median_s)),
                 ("speed to lead", "sent: p90", duration_text(s.sent_p90_s)),
                 ("sla", "tasks due", self.sla.due), ("sla", "met", self.sla.met),
                 ("sla", "breached", self.sla.breached)]
        rows += [("sla breached by kind", kind, n) for kind, n in self.sla.breached_by_kind.items()]
        rows += [("unassigned (now)", "leads", self.unassigned)]
        rows += [("unassigned (now)", priority, n) for priority, n in self.unassigned_by_priority.items()]
        o = self.outbox
        rows += [("outbox (now)", "pending", o.pending), ("outbox (now)", "sending", o.sending),
                 ("outbox (now)", "oldest pending", duration_text(o.oldest_pending_s)),
                 ("outbox (now)", "failed (all time)", o.failed),
                 ("outbox", "failed, queued this day", o.failed_in_day),
                 ("quarantine", "rows", self.quarantined)]
        rows += [("quarantine by reason", reason, n) for reason, n in self.quarantine_by_reason.items()]
        return [{"section": a, "metric": b, "value": str(c)} for a, b, c in rows]

    def markdown(self) -> str:
        """The artifact's Markdown: one short section per question ops ask in the morning."""
        s, o = self.speed, self.outbox

        def listing(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"

        return "\n".join([
            f"# Pipeline health {self.day} ({self.timezone})",
            "",
            f"- **Volume:** {self.submissions} submissions ({self.spam_submissions} from spam), "
            f"{self.new_leads} new leads. By channel: {listing(self.by_channel)}.",
            f"- **Speed to lead** (submission to rep alert, {s.alerts} alerts): queued median "
            f"{duration_text(s.queued_median_s)}, p90 {duration_text(s.queued_p90_s)}; sent ({s.sent}) median "
            f"{duration_text(s.sent_median_s)}, p90 {duration_text(s.sent_p90_s)}.",
            f"- **SLA:** {self.sla.due} tasks due, {self.sla.met} met, **{self.sla.breached} breached**"
            + (f" ({listing(self.sla.breached_by_kind)})." if self.sla.breached else "."),
            f"- **Unassigned leads now:** {self.unassigned}"
            + (f" ({listing(self.unassigned_by_priority)})." if self.unassigned else "."),
            f"- **Outbox now:** {o.pending} pending (oldest {duration_text(o.oldest_pending_s)}), {o.sending} "
            f"sending, {o.failed} failed in all; {o.failed_in_day} of this day's messages failed"
            + (f" ({listing(o.failed_in_day_by_kind)})." if o.failed_in_day else "."),
            f"- **Quarantine:** {self.quarantined} rows" + (f" ({listing(self.quarantine_by_reason)})."
                                                            if self.quarantined else "."),
            "",
            f"Window {self.start} to {self.end} (UTC). Counts and times only: no lead is named here.",
        ])


def daily_health(day: str, timezone: str, start: datetime, end: datetime, now: datetime, *,
                 submissions: pd.DataFrame, new_leads: int, alerts: pd.DataFrame, sla: pd.DataFrame,
                 unassigned: pd.DataFrame, outbox: pd.DataFrame, failed_in_day: pd.DataFrame,
                 quarantine: pd.DataFrame) -> DailyHealth:
    """Shape one day's aggregates (see crm/health.py HealthInputs) into the health report."""
    spam = submissions["spam"].astype(bool) if len(submissions) else pd.Series(dtype=bool)
    clean = submissions.loc[~spam] if len(submissions) else submissions
    by_channel = (clean.groupby("source")["submissions"].sum().sort_values(ascending=False)
                  if len(clean) else pd.Series(dtype="int64"))
    queue = unassigned.assign(priority=unassigned["priority"].fillna("none")) if len(unassigned) else unassigned
    by_priority = ({str(k): int(v) for k, v in sorted(zip(queue["priority"], queue["leads"], strict=True))}
                   if len(queue) else {})
    reasons = reason_counts(quarantine)
    return DailyHealth(
        day=day, timezone=timezone, start=start.isoformat(), end=end.isoformat(),
        submissions=int(submissions["submissions"].sum()) if len(submissions) else 0,
        spam_submissions=int(submissions.loc[spam, "submissions"].sum()) if len(submissions) else 0,
        new_leads=int(new_leads), by_channel={str(k): int(v) for k, v in by_channel.items()},
        speed=speed_to_lead(alerts), sla=sla_outcome(sla, now), unassigned=sum(by_priority.values()),
        unassigned_by_priority=by_priority, outbox=outbox_health(outbox, failed_in_day, now),
        quarantined=int(quarantine["rows"].sum()) if len(quarantine) else 0, quarantine_by_reason=reasons,
    )
