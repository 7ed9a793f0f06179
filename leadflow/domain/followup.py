"""Follow-up cadences, recycling and returning leads: the cadence policy and its pure rules over pandas columns."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.config.policy import VersionedPolicy, load_policy
from leadflow.domain.scoring import TIERS

StepKind = Literal["call", "email", "social", "breakup"]
# Steps whose message the outbox sends to the prospect (with consent); the others are rep tasks.
EMAIL_KINDS: frozenset[str] = frozenset({"email", "breakup"})
# What a rep records about a step (`leadflow lead status <email> <outcome>`, or a status import row).
OUTCOMES: tuple[str, ...] = ("no_answer", "left_voicemail", "replied", "meeting_booked")
OUTCOME_ALIASES: dict[str, str] = {"voicemail": "left_voicemail", "left_message": "left_voicemail",
                                   "no_response": "no_answer", "unanswered": "no_answer", "reply": "replied",
                                   "responded": "replied", "meeting": "meeting_booked"}
FOLLOWUP_OUTCOME = "followup_outcome"
# Sequence states in lead_followups.
ACTIVE, STOPPED, COMPLETED, RECYCLED = "active", "stopped", "completed", "recycled"
NEXT_QUARTER = "next_quarter"
_REASON = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CadenceStep(_Strict):
    """One touch of a sequence: on which day after the start, what kind, at which local hour of the rep."""

    day: int = Field(ge=0, le=365, description="Days after the sequence started (in the rep's time zone).")
    kind: StepKind
    hour: int = Field(ge=0, le=23, description="Local hour of the rep's time zone the step falls due.")
    template: str | None = Field(default=None, description="Email template (leadflow/templates) of email steps.")

    @model_validator(mode="after")
    def _emails_have_templates(self) -> CadenceStep:
        if (self.kind in EMAIL_KINDS) != (self.template is not None):
            raise ValueError(f"a {self.kind} step {'needs' if self.kind in EMAIL_KINDS else 'takes no'} template")
        if self.template is not None and not re.fullmatch(r"[a-z0-9_]+\.j2", self.template):
            raise ValueError(f"template {self.template!r} is not a template file name")
        return self


class Cadence(_Strict):
    """A named sequence for the leads of some tiers (and channels); empty lists match every value."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    tiers: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    steps: list[CadenceStep] = Field(min_length=1)

    @field_validator("tiers")
    @classmethod
    def _known_tiers(cls, tiers: list[str]) -> list[str]:
        unknown = sorted(set(tiers) - set(TIERS))
        if unknown:
            raise ValueError(f"unknown tiers {unknown} (known: {', '.join(TIERS)})")
        return tiers

    @model_validator(mode="after")
    def _steps_in_order(self) -> Cadence:
        order = [(s.day, s.hour) for s in self.steps]
        if order != sorted(order) or len(set(order)) != len(order):
            raise ValueError(f"cadence {self.name}: steps must be in (day, hour) order, each at its own time")
        return self

    def matches_all(self) -> bool:
        """Whether this cadence takes any lead (the policy's last cadence must)."""
        return not self.tiers and not self.channels


class RecycleRules(_Strict):
    """Recycling and returning leads: reason codes -> delays, the terminal reasons, the cold period."""

    delays: dict[str, int | Literal["next_quarter"]] = Field(
        description="Recycle reason code -> days until the lead is re-engaged, or next_quarter (its first day).")
    default_delay: int = Field(ge=1, le=1095, description="Days for a status import's recycled row with no known "
                                                          "reason or date.")
    timing_reasons: list[str] = Field(default_factory=list, description="Disqualification reasons that mean 'not "
                                                                         "now': a new submission brings the lead back.")
    terminal_reasons: list[str] = Field(default_factory=list, description="Disqualification reasons no new "
                                                                           "submission resurrects.")
    cold_after_days: int = Field(ge=1, le=3650, description="An open lead without a touch this long is cold: a new "
                                                            "submission routes it as a returning lead.")
    fresh_hours: int = Field(default=72, ge=1, le=24 * 366, description="Only a submission at most this old brings a "
                                                                        "lead back: imported history does not.")

    @model_validator(mode="after")
    def _disjoint(self) -> RecycleRules:
        codes = [*self.delays, *self.timing_reasons, *self.terminal_reasons]
        bad = [c for c in codes if not _REASON.fullmatch(c)]
        if bad:
            raise ValueError(f"reason codes must be lower-case slugs: {bad}")
        both = sorted(set(self.terminal_reasons) & (set(self.delays) | set(self.timing_reasons)))
        if both:
            raise ValueError(f"reasons both terminal and timing: {both}")
        if any(isinstance(d, int) and not 1 <= d <= 1095 for d in self.delays.values()):
            raise ValueError("recycle delays must be 1 to 1095 days")
        return self


class CadencePolicy(VersionedPolicy):
    """The follow-up policy: who is in a sequence, the sequences, what stops them, recycling and returning leads."""

    enroll_statuses: list[str] = Field(min_length=1, description="Statuses whose owned leads follow a sequence; "
                                                                  "any other status stops it.")
    business_days: list[int] = Field(min_length=1, description="Weekdays (0 Monday .. 6 Sunday) steps fall on.")
    overdue_after_hours: int = Field(ge=1, le=720, description="Hours after its due time an open step task is "
                                                               "reported to the manager (once).")
    cadences: list[Cadence] = Field(min_length=1)
    advance_outcomes: list[str]
    stop_outcomes: list[str]
    recycle: RecycleRules

    @model_validator(mode="after")
    def _consistent(self) -> CadencePolicy:
        from leadflow.domain.status import STATUSES

        if not self.cadences[-1].matches_all():
            raise ValueError("the last cadence must have no tiers and no channels (the default)")
        names = [c.name for c in self.cadences]
        if len(set(names)) != len(names):
            raise ValueError("cadence names must be distinct")
        unknown = sorted(set(self.enroll_statuses) - set(STATUSES) | {"recycled", "spam"} & set(self.enroll_statuses))
        if unknown:
            raise ValueError(f"enroll_statuses cannot be {unknown}")
        if not set(self.business_days) <= set(range(7)):
            raise ValueError("business_days are 0 (Monday) to 6 (Sunday)")
        outcomes = [*self.advance_outcomes, *self.stop_outcomes]
        if sorted(outcomes) != sorted(OUTCOMES):
            raise ValueError(f"every outcome ({', '.join(OUTCOMES)}) must either advance or stop a sequence, once")
        return self

    def cadence(self, name: str) -> Cadence:
        """The cadence of this name."""
        return next(c for c in self.cadences if c.name == name)


def load_cadence_policy(name_or_path: str = "cadence") -> CadencePolicy:
    """The cadence policy from leadflow/config/policies (or a path)."""
    return load_policy(CadencePolicy, name_or_path)


# --- vocabulary ----------------------------------------------------------------------------------------------


def parse_outcome(value: Any) -> str | None:
    """A follow-up outcome as typed ('Left voicemail') in our vocabulary; None when it is not one."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    token = re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")
    return token if token in OUTCOMES else OUTCOME_ALIASES.get(token)


def zone(name: Any, default: str) -> str:
    """A rep's IANA time zone, or `default` when it is missing or unknown."""
    if isinstance(name, str) and name.strip():
        try:
            ZoneInfo(name.strip())
            return name.strip()
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return default


# --- which sequence, and when each step falls due --------------------------------------------------------------


def choose_cadences(tiers: pd.Series, channels: pd.Series, policy: CadencePolicy) -> pd.Series:
    """The first cadence of the policy matching each lead's tier and channel (the last matches everyone)."""
    tier = tiers.astype("string").fillna("")
    channel = channels.astype("string").fillna("")
    chosen = pd.Series(pd.NA, index=tiers.index, dtype="string")
    for cadence in policy.cadences:
        fits = chosen.isna()
        if cadence.tiers:
            fits &= tier.isin(cadence.tiers)
        if cadence.channels:
            fits &= channel.isin(cadence.channels)
        chosen = chosen.mask(fits, cadence.name)
    return chosen


def due_times(started_at: pd.Series, days: pd.Series, hours: pd.Series, timezones: pd.Series,
              business_days: list[int]) -> pd.Series:
    """When each step falls due: `day` days after the local start date, at `hour` in the rep's time zone, moved on
    to the next business day when it lands on another day. UTC."""
    start = pd.to_datetime(started_at, utc=True)
    out = pd.Series(pd.NaT, index=started_at.index, dtype="datetime64[us, UTC]")
    allowed = np.zeros(7, dtype=bool)
    allowed[list(business_days)] = True
    for tz, rows in timezones.groupby(timezones, sort=True).groups.items():
        local = start.loc[rows].dt.tz_convert(str(tz)).dt.tz_localize(None).dt.normalize()
        due = local + pd.to_timedelta(days.loc[rows].astype("int64"), unit="D")
        for _ in range(7):
            off = ~allowed[due.dt.weekday.to_numpy()]
            if not off.any():
                break
            due = due.where(~off, due + pd.Timedelta(days=1))
        due = due + pd.to_timedelta(hours.loc[rows].astype("int64"), unit="h")
        out.loc[rows] = (due.dt.tz_localize(str(tz), ambiguous="NaT", nonexistent="shift_forward")
                         .dt.tz_convert("UTC").astype("datetime64[us, UTC]"))
    return out


def step_table(policy: CadencePolicy) -> pd.DataFrame:
    """Every step of every cadence, one row each: cadence, step (0-based), day, hour, kind, template, last."""
    rows = [{"cadence": c.name, "step": i, "day": s.day, "hour": s.hour, "kind": s.kind, "template": s.template,
             "last": i == len(c.steps) - 1}
            for c in policy.cadences for i, s in enumerate(c.steps)]
    return pd.DataFrame(rows)


def steps_of(cadences: pd.Series, steps: pd.Series, policy: CadencePolicy) -> pd.DataFrame:
    """The policy's step for each (cadence, step index); a row with NA kind where the cadence has no such step
    (its sequence is done, or the policy changed under it)."""
    table = step_table(policy).set_index(["cadence", "step"])
    key = pd.MultiIndex.from_arrays([cadences.astype("string").fillna("").to_numpy(),
                                     pd.to_numeric(steps, errors="coerce").fillna(-1).astype("int64").to_numpy()])
    found = table.reindex(key)
    found.index = cadences.index
    return found


# --- what stops a sequence -------------------------------------------------------------------------------------


def stop_reasons(statuses: pd.Series, is_spam: pd.Series, owners: pd.Series, policy: CadencePolicy) -> pd.Series:
    """Why each active sequence stops now (status:<status>, spam, no_owner), NA where it goes on."""
    status = statuses.astype("string").fillna("")
    reason = pd.Series(pd.NA, index=statuses.index, dtype="string")
    reason = reason.mask(owners.isna().to_numpy(), "no_owner")
    reason = reason.mask(~status.isin(policy.enroll_statuses).to_numpy(), "status:" + status)
    return reason.mask(is_spam.astype("boolean").fillna(False).to_numpy(dtype=bool), "spam")


def outcome_effect(outcome: str, policy: CadencePolicy) -> str:
    """What an outcome does to a sequence: 'advance' (the step is done, the next follows) or 'stop'."""
    if outcome in policy.stop_outcomes:
        return "stop"
    if outcome in policy.advance_outcomes:
        return "advance"
    raise ValueError(f"unknown follow-up outcome {outcome!r} (known: {', '.join(OUTCOMES)})")


# --- recycling -------------------------------------------------------------------------------------------------


def next_quarter(moment: datetime, timezone: str) -> pd.Timestamp:
    """Midnight of the first day of the quarter after `moment`, in `timezone`, as UTC."""
    local = pd.Timestamp(moment).tz_convert(timezone)
    quarter = (local.month - 1) // 3
    year, month = (local.year + 1, 1) if quarter == 3 else (local.year, 3 * (quarter + 1) + 1)
    return pd.Timestamp(year=year, month=month, day=1, tz=timezone).tz_convert("UTC")


def reengage_at(changed_at: datetime, reason: str | None, on: datetime | None, policy: CadencePolicy,
                timezone: str, *, strict: bool) -> tuple[pd.Timestamp | None, str | None]:
    """When a recycled lead is re-engaged: the date given, else its reason code's delay (else, unless `strict`, the
    default delay). Returns (time, None) or (None, error code)."""
    at = pd.Timestamp(changed_at)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    if on is not None:
        when = pd.Timestamp(on)
        when = when.tz_localize(timezone).tz_convert("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        return (when, None) if when > at else (None, "reengage_date_not_in_future")
    delay = policy.recycle.delays.get(reason or "")
    if delay is None:
        if strict:
            return None, "recycle_needs_reengage_date_or_known_reason"
        delay = policy.recycle.default_delay
    if delay == NEXT_QUARTER:
        return next_quarter(at.to_pydatetime(), timezone), None
    return at + pd.Timedelta(days=int(delay)), None


# --- returning leads -------------------------------------------------------------------------------------------


def returning(statuses: pd.Series, reasons: pd.Series, previous_touch_at: pd.Series, now: datetime,
              policy: CadencePolicy) -> pd.Series:
    """Why each lead that submits again returns (recycled, timing:<reason>, cold), NA when it does not.

    A disqualification for a terminal reason (or any reason that is not about timing) is never resurrected; an
    open lead returns when its touch before this one is older than the policy's cold period.
    """
    status = statuses.astype("string").fillna("")
    reason = reasons.astype("string").fillna("")
    timing = set(policy.recycle.timing_reasons) | set(policy.recycle.delays)
    terminal = reason.isin(policy.recycle.terminal_reasons).to_numpy()
    before = pd.to_datetime(previous_touch_at, utc=True)
    cold_since = pd.Timestamp(now) - pd.Timedelta(days=policy.recycle.cold_after_days)
    cold = status.isin([*policy.enroll_statuses, "new"]).to_numpy() & (before < cold_since).fillna(False).to_numpy()
    why = pd.Series(pd.NA, index=statuses.index, dtype="string")
    why = why.mask(cold, "cold")
    why = why.mask((status == "disqualified").to_numpy() & reason.isin(timing).to_numpy() & ~terminal,
                   "timing:" + reason)
    return why.mask((status == "recycled").to_numpy(), "recycled")


# --- the rows a follow-up run writes ---------------------------------------------------------------------------

SUBJECTS: dict[str, str] = {"followup_email.j2": "Following up on your inquiry",
                            "followup_resource.j2": "A resource that may help",
                            "followup_breakup.j2": "Closing the loop"}


def step_key(lead_ids: pd.Series, sequences: pd.Series, steps: pd.Series, kind: str = "followup") -> pd.Series:
    """The idempotency key of a step's task (or message): one per lead, sequence and step, whatever the runs."""
    return (kind + ":lead:" + lead_ids.astype("int64").astype(str) + ":seq:" + sequences.astype("int64").astype(str)
            + ":step:" + steps.astype("int64").astype(str))


def consented(due: pd.DataFrame) -> np.ndarray:
    """Leads a follow-up email may go to: explicit opt-in, not do-not-contact, not spam, with an address."""
    opt_in = due["email_opt_in"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return opt_in & ~_blocked(due) & due["email"].notna().to_numpy()


def _blocked(due: pd.DataFrame) -> np.ndarray:
    return (due["do_not_contact"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            | due["is_spam"].astype("boolean").fillna(False).to_numpy(dtype=bool))


def step_rows(due: pd.DataFrame, step: pd.DataFrame, policy: CadencePolicy, now: datetime
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The task of each due step, and the emails among them: (crm_tasks rows, outbox rows).

    An email step with consent is sent through the outbox and its task is done at once; without consent (or for a
    do-not-contact lead, whatever the kind) the step is recorded as skipped with the reason; calls and social
    touches are open rep tasks, reported to the manager when still open `overdue_after_hours` after their time.
    """
    from leadflow.domain import messages

    email_kind = step["kind"].isin(sorted(EMAIL_KINDS)).to_numpy()
    ok = consented(due)
    blocked = _blocked(due)
    send = email_kind & ok
    skipped = blocked | (email_kind & ~ok)
    why = np.where(blocked, "do_not_contact", np.where(email_kind & ~ok, "no_consent", ""))
    status = np.where(send, "done", np.where(skipped, "skipped", "open"))
    deadline = pd.to_datetime(due["due_at"], utc=True) + pd.Timedelta(hours=policy.overdue_after_hours)
    details = [
        json.dumps({"cadence": c, "sequence": int(q), "step": int(s) + 1, "day": int(d), "kind": k,
                    "scheduled_at": pd.Timestamp(at).isoformat(), "policy_version": policy.version,
                    **({"skipped": w} if w else {}), **({"email": "queued"} if e else {})})
        for c, q, s, d, k, at, w, e in zip(due["cadence"], due["sequence"], due["step"], step["day"], step["kind"],
                                          due["due_at"], why, send, strict=True)
    ]
    tasks = pd.DataFrame({
        "idempotency_key": step_key(due["lead_id"], due["sequence"], due["step"]).to_numpy(),
        "lead_id": due["lead_id"].astype("int64").to_numpy(),
        "owner_id": pd.array(due["owner_id"], dtype="Int64"),
        "kind": ("followup_" + step["kind"].astype(str)).to_numpy(),
        "status": status,
        "due_at": deadline.where(status == "open").to_numpy(),
        "details": details,
        "created_at": now,
        "completed_at": pd.Series(now, index=due.index).where(status != "open").to_numpy(),
    })
    tasks["due_at"] = pd.to_datetime(tasks["due_at"], utc=True)
    tasks["completed_at"] = pd.to_datetime(tasks["completed_at"], utc=True)
    mails = []
    for name, rows in due.loc[send].groupby(step.loc[send, "template"].astype(str)).groups.items():
        part = due.loc[rows]
        bodies = messages.render_many(name, part[["first_name", "company", "rep_name"]])
        mails.append(pd.DataFrame({
            "idempotency_key": step_key(part["lead_id"], part["sequence"], part["step"], "followup_email").to_numpy(),
            "lead_id": part["lead_id"].astype("int64").to_numpy(), "kind": "followup_email", "channel": "email",
            "recipient": part["email"].to_numpy(), "subject": SUBJECTS.get(name, "Following up"),
            "body": bodies.to_numpy()}))
    frame = pd.concat(mails, ignore_index=True) if mails else pd.DataFrame(
        columns=["idempotency_key", "lead_id", "kind", "channel", "recipient", "subject", "body"])
    return tasks, frame.assign(status="pending", attempts=0, created_at=now)


def returning_alerts(leads: pd.DataFrame, reps: pd.DataFrame, why: pd.Series, now: datetime) -> pd.DataFrame:
    """One alert per returning or re-engaged lead to its owner, carrying its history (key returning_alert:lead:<id>
    :seq:<sequence>): the rep's channel when they have an alert_url, else their email."""
    from leadflow.domain import messages

    columns = ["idempotency_key", "lead_id", "kind", "channel", "recipient", "subject", "body"]
    rep = reps.set_index("id")
    owner = pd.to_numeric(leads["owner_id"], errors="coerce")
    keep = owner.isin(rep.index).to_numpy()
    leads, owner, why = leads.loc[keep], owner.loc[keep].astype("int64"), why.loc[keep]
    if leads.empty:
        return pd.DataFrame(columns=[*columns, "status", "attempts", "created_at"])
    names = (leads["first_name"].astype("string").fillna("") + " " + leads["last_name"].astype("string").fillna(""))
    label = why.astype(str).map(lambda w: "Recycled lead re-engaged" if w == "reengaged" else
                                "Returning lead" + (" (" + w.replace("_", " ") + ")" if w else ""))
    fields = pd.DataFrame({
        "why": label, "lead_id": leads["lead_id"].astype(str), "name": names.str.strip(),
        "job_title": leads["job_title"], "company": leads["company"], "country": leads["country"],
        "priority": leads["priority"], "tier": leads["tier"], "previous_owner": leads["previous_owner"],
        "touches": leads["touches"], "history": leads["history"]}, index=leads.index)
    url = owner.map(rep["alert_url"]).astype("string")
    has_url = (url.notna() & url.str.strip().ne("")).to_numpy(dtype=bool)
    frame = pd.DataFrame({
        "idempotency_key": step_key(leads["lead_id"], leads["sequence"].fillna(0), pd.Series(0, index=leads.index),
                                    "returning_alert").str.replace(":step:0", "", regex=False).to_numpy(),
        "lead_id": leads["lead_id"].astype("int64").to_numpy(), "kind": "rep_alert",
        "channel": np.where(has_url, "apprise", "email"),
        "recipient": np.where(has_url, (messages.REP_CHANNEL_PREFIX + owner.astype(str)).to_numpy(),
                              owner.map(rep["email"]).astype(str).to_numpy()),
        "subject": (label + ": lead #" + leads["lead_id"].astype(str)).to_numpy(),
        "body": messages.render_many("rep_alert_returning_lead.j2", fields).to_numpy(),
    })
    return frame.assign(status="pending", attempts=0, created_at=now)


# --- monthly report figures ------------------------------------------------------------------------------------

REP_STEP_KINDS = ("followup_call", "followup_social")


def report_figures(active: pd.DataFrame, step_tasks: pd.DataFrame, returns: pd.DataFrame, start: pd.Timestamp,
                   end: pd.Timestamp, as_of: pd.Timestamp, stuck_after_days: int = 7) -> dict[str, Any]:
    """The monthly report's follow-up figures.

    `active`: active sequences counted by cadence and step (steps created so far), as the report runs.
    `step_tasks`: lead_id, kind, status, created_at, due_at, completed_at of follow-up step tasks. `returns`: lead_id,
    occurred_at of re-engaged or returning leads, with the lead's current `status`. Leads per step counts active
    sequences by the step they wait for (1-based); stuck are leads with a rep step open more than `stuck_after_days`
    past its deadline; on time are the rep steps due in the month done by their deadline.
    """
    by_step = (active.assign(next_step=active["step"].astype("int64") + 1).groupby(["cadence", "next_step"])["leads"]
               .sum().reset_index().sort_values(["cadence", "next_step"]))
    rep = step_tasks.loc[step_tasks["kind"].isin(REP_STEP_KINDS)]
    due = pd.to_datetime(rep["due_at"], utc=True)
    done_at = pd.to_datetime(rep["completed_at"], utc=True)
    open_ = rep["status"].eq("open").to_numpy()
    stuck = int(rep.loc[open_ & (due < as_of - pd.Timedelta(days=stuck_after_days)).fillna(False).to_numpy(),
                        "lead_id"].nunique())
    in_month = ((due >= start) & (due < end) & (due < as_of)).fillna(False).to_numpy()
    on_time = int((in_month & rep["status"].eq("done").to_numpy() & (done_at <= due).fillna(False).to_numpy()).sum())
    window = pd.to_datetime(returns["occurred_at"], utc=True)
    back = returns.loc[((window >= start) & (window < end)).to_numpy()].drop_duplicates("lead_id")
    converted = int(back["status"].eq("converted").sum())
    return {
        "leads_per_step": [{"cadence": str(c), "step": int(s), "leads": int(n)}
                           for c, s, n in by_step.itertuples(index=False)],
        "active_sequences": int(active["leads"].sum()),
        "stuck_leads": stuck,
        "rep_steps_due": int(in_month.sum()),
        "rep_steps_on_time": on_time,
        "on_time_rate": round(on_time / int(in_month.sum()), 4) if in_month.any() else None,
        "reengaged": len(back),
        "reengaged_converted": converted,
        "reengaged_conversion": round(converted / len(back), 4) if len(back) else None,
    }
