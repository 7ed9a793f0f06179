"""Send Auto-Response, Alert Sales Rep, Notify Sales Manager: messages rendered from templates as outbox rows."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from leadflow.domain.qualification import ITEMS

TEMPLATE_DIR = Path(__file__).parents[1] / "templates"
OUTBOX_COLUMNS = ("idempotency_key", "lead_id", "kind", "channel", "recipient", "subject", "body", "status",
                  "attempts", "created_at")
LISTED_IDS = 50
# Apprise rows name their alert channel, never its URL: the URLs are secrets (settings, or the rep's alert_url) and
# are resolved at send time (leadflow.steps.delivery), so no table, log or export holds them.
MANAGER_CHANNEL = "manager"
OPS_CHANNEL = "ops"
REP_CHANNEL_PREFIX = "rep:"  # rep:<sales_reps.id>: the rep's alert_url


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The template environment: autoescaping everywhere, so lead-supplied text can never inject markup."""
    return Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)


def template(name: str) -> Template:
    """A template of leadflow/templates by file name."""
    return environment().get_template(name)


def render(name: str, **context: Any) -> str:
    """Render one template with its context (values are escaped)."""
    return template(name).render(**context)


_SENTINEL = re.compile("\x00f:([a-z_]+)\x00")
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;"))


def escape_column(values: pd.Series) -> pd.Series:
    """HTML-escape a text column exactly as Jinja's autoescape (markupsafe) does, column-wise."""
    out = values.astype("string[pyarrow]")
    for char, entity in _ESCAPES:
        out = out.str.replace(char, entity, regex=False)
    return out


def render_many(name: str, rows: pd.DataFrame) -> pd.Series:
    """Render a template once per pattern of missing fields instead of once per row, then fill in each row's values.

    The template is rendered with a marker for every present field (markers contain nothing autoescape would
    change), split at the markers, and each row's escaped values are joined in between: the output is what
    `render` gives row by row, for templates that only print fields or test whether they are empty.
    """
    if rows.empty:
        return pd.Series([], dtype="string[pyarrow]", index=rows.index)
    tpl = template(name)
    text = rows.astype("string[pyarrow]")
    present = text.notna() & text.ne("")
    escaped = {col: escape_column(text[col]) for col in rows.columns}
    out = pd.Series(pd.NA, index=rows.index, dtype="string[pyarrow]")
    flags = present.to_numpy(dtype=bool)
    patterns = flags.astype(np.int64) @ (1 << np.arange(flags.shape[1], dtype=np.int64))
    for pattern, group in pd.Series(patterns, index=rows.index).groupby(patterns).groups.items():
        context = {col: (f"\x00f:{col}\x00" if pattern >> bit & 1 else None)
                   for bit, col in enumerate(rows.columns)}
        pieces = _SENTINEL.split(tpl.render(**context))
        result = pd.Series(pieces[0], index=group, dtype="string[pyarrow]")
        for i in range(1, len(pieces), 2):
            result = result + escaped[pieces[i]].loc[group] + pieces[i + 1]
        out.loc[group] = result
    return out


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return None
    return str(value)


def _frame(rows: list[dict[str, Any]] | pd.DataFrame, now: datetime) -> pd.DataFrame:
    columns = [c for c in OUTBOX_COLUMNS if c not in ("status", "attempts", "created_at")]
    frame = rows.reindex(columns=columns) if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=columns)
    frame["lead_id"] = frame["lead_id"].astype("Int64")
    return frame.assign(status="pending", attempts=0, created_at=now)


def message_key(kind: str, *parts: object) -> str:
    """The outbox idempotency key of a message: its kind, then what it is about ('rep_alert:lead:7:rep:2')."""
    return ":".join([kind, *(str(part) for part in parts)])


def message_keys(kind: str, **parts: pd.Series) -> pd.Series:
    """message_key for a column of messages: each keyword adds '<name>:<value>' ('auto_response:lead:7')."""
    keys = None
    for name, values in parts.items():
        piece = f"{name}:" + values.astype(str)
        keys = piece if keys is None else keys + ":" + piece.to_numpy()
    return f"{kind}:" + keys


def suppressed(leads: pd.DataFrame) -> np.ndarray:
    """Leads that get no prospect email: do-not-contact, spam, or consent explicitly withdrawn (opt-out)."""
    dnc = leads["do_not_contact"].astype("boolean").to_numpy(dtype=bool, na_value=False)
    spam = leads["is_spam"].astype("boolean").to_numpy(dtype=bool, na_value=False) if "is_spam" in leads else False
    opted_out = leads["email_opt_in"].astype("boolean").eq(False).to_numpy(dtype=bool, na_value=False)
    return dnc | spam | opted_out


def auto_responses(leads: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """One auto-response per prospect (key auto_response:lead:<id>), except to suppressed leads."""
    keep = leads.loc[~suppressed(leads) & leads["email"].notna().to_numpy()]
    bodies = render_many("auto_response_email.j2", keep[["first_name", "company"]])
    frame = pd.DataFrame({
        "idempotency_key": message_keys("auto_response", lead=keep["lead_id"]),
        "lead_id": keep["lead_id"].to_numpy(),
        "kind": "auto_response",
        "channel": "email",
        "recipient": keep["email"].to_numpy(),
        "subject": "Thank you for contacting us",
        "body": bodies.to_numpy(),
    })
    return _frame(frame, now)


def checklist_text(checklists: pd.Series) -> pd.Series:
    """One line per checklist for alerts: 'budget met (why); authority unknown (why); ...'."""
    def line(value: Any) -> str | None:
        data = json.loads(value) if isinstance(value, str) else value
        if not isinstance(data, dict):
            return None
        return "; ".join(f"{item} {data.get(item, {}).get('status', 'unknown')} ({data.get(item, {}).get('why', '')})"
                         for item in ITEMS)

    return checklists.map(line).astype("string")


def rep_alerts(leads: pd.DataFrame, reps: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """One alert per lead newly assigned to a rep (key rep_alert:lead:<id>:rep:<rep>): to the rep's channel
    ('rep:<id>', their Apprise URL at send time) when they have an alert_url, else to their email."""
    if leads.empty or reps.empty:
        return _frame(pd.DataFrame(), now)
    rep = reps.set_index("id")
    owner = leads["owner_id"].astype("int64")
    leads = leads.loc[owner.isin(rep.index).to_numpy()]
    owner = owner.loc[leads.index]
    names = (leads["first_name"].astype("string").fillna("") + " " + leads["last_name"].astype("string").fillna(""))
    due = pd.to_datetime(leads["due_at"], utc=True)
    fields = pd.DataFrame({
        "lead_id": leads["lead_id"].astype(str), "priority": leads["priority"],
        "priority_reason": leads["priority_reason"], "name": names.str.strip(), "job_title": leads["job_title"],
        "company": leads["company"], "country": leads["country"],
        "checklist": checklist_text(leads["checklist"]), "due_at": due.dt.strftime("%Y-%m-%d %H:%M UTC"),
    }, index=leads.index)
    channel, recipient = _rep_route(owner, rep)
    frame = pd.DataFrame({
        "idempotency_key": message_keys("rep_alert", lead=leads["lead_id"], rep=owner),
        "lead_id": leads["lead_id"].to_numpy(),
        "kind": "rep_alert",
        "channel": channel,
        "recipient": recipient,
        "subject": "New " + leads["priority"].astype(str) + " lead assigned to you",
        "body": render_many("rep_alert_new_lead.j2", fields).to_numpy(),
    })
    return _frame(frame, now)


def _rep_route(owner: pd.Series, rep: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Channel and recipient per owning rep: their channel ('rep:<id>') when they have an alert_url, else email."""
    url = owner.map(rep["alert_url"]).astype("string")
    has_url = (url.notna() & url.str.strip().ne("")).to_numpy(dtype=bool)
    recipient = (REP_CHANNEL_PREFIX + owner.astype(str)).astype("string").where(
        has_url, owner.map(rep["email"]).astype("string"))
    return np.where(has_url, "apprise", "email"), recipient.to_numpy()


def reply_alerts(mail: pd.DataFrame, reps: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """One alert per mail from an owned lead to its owner (key reply_alert:lead:<id>:mail:<message key>), routed as
    rep_alerts; mail columns: lead_id, owner_id, message_key, first_name, last_name, company, subject, excerpt,
    replied (it answers our mail), written_at, sequence_stopped. Unowned leads and unknown reps get none; the
    rows keep the index of `mail`."""
    if mail.empty or reps.empty:
        return _frame(pd.DataFrame(), now)
    rep = reps.set_index("id")
    owner = pd.to_numeric(mail["owner_id"], errors="coerce").astype("Int64")
    mail = mail.loc[owner.isin(rep.index).fillna(False).to_numpy(dtype=bool)]
    if mail.empty:
        return _frame(pd.DataFrame(), now)
    owner = owner.loc[mail.index].astype("int64")
    names = (mail["first_name"].astype("string").fillna("") + " " + mail["last_name"].astype("string").fillna(""))
    replied = mail["replied"].astype(bool)
    fields = pd.DataFrame({
        "lead_id": mail["lead_id"].astype(str), "name": names.str.strip(), "company": mail["company"],
        "what": np.where(replied, "replied to our email", "wrote to the sales mailbox"),
        "subject": mail["subject"], "excerpt": mail["excerpt"],
        "written_at": pd.to_datetime(mail["written_at"], utc=True).dt.strftime("%Y-%m-%d %H:%M UTC"),
        "stopped": np.where(mail["sequence_stopped"].astype(bool), "yes", ""),
    }, index=mail.index)
    channel, recipient = _rep_route(owner, rep)
    frame = pd.DataFrame({
        "idempotency_key": message_keys("reply_alert", lead=mail["lead_id"], mail=mail["message_key"]),
        "lead_id": mail["lead_id"].to_numpy(),
        "kind": "reply_alert",
        "channel": channel,
        "recipient": recipient,
        "subject": np.where(replied, "Your lead replied", "Your lead wrote to sales"),
        "body": render_many("rep_alert_lead_replied.j2", fields).to_numpy(),
    })
    return _frame(frame, now)


def _manager_channel(manager_alerts: bool, sales_inbox: str) -> tuple[str, str]:
    """The manager channel when its Apprise URLs are configured, else the sales inbox by email."""
    return ("apprise", MANAGER_CHANNEL) if manager_alerts else ("email", sales_inbox)


def _digest_key(kind: str, ids: list[int]) -> str:
    digest = hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()[:32]
    return message_key("manager_notice", kind, digest)


def _listed_leads(unassigned: pd.DataFrame) -> list[dict[str, Any]]:
    """The queued leads as a notice lists them, by id: id, masked address (when known) and priority."""
    rows = unassigned.assign(lead_id=unassigned["lead_id"].astype("int64")).sort_values("lead_id")
    emails = rows["email"] if "email" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    return [{"id": int(i), "email": _masked(e), "priority": p if isinstance(p, str) else None}
            for i, e, p in zip(rows["lead_id"], emails.astype(object), rows["priority"].astype(object), strict=True)]


def unassigned_notice(unassigned: pd.DataFrame, queue: str, risk_priorities: list[str], manager_alerts: bool,
                      sales_inbox: str, now: datetime) -> pd.DataFrame:
    """One notice about leads newly put in the fallback queue (keyed by those leads, so a re-run adds none).

    `manager_alerts`: whether manager Apprise URLs are configured (the notice then names the `manager` channel);
    else it is emailed to `sales_inbox`.
    """
    if unassigned.empty:
        return _frame([], now)
    ids = sorted(int(i) for i in unassigned["lead_id"])
    priorities = Counter(unassigned["priority"].fillna("none"))
    at_risk = int(unassigned["priority"].isin(risk_priorities).sum())
    body = render(
        "manager_notice_unassigned.j2", count=len(ids), queue=queue,
        reasons=sorted(Counter(unassigned["fallback_reason"].fillna("unknown")).items()),
        priorities=sorted(priorities.items()), at_risk=at_risk, risk_priorities="/".join(risk_priorities),
        leads=_listed_leads(unassigned)[:LISTED_IDS], more=max(len(ids) - LISTED_IDS, 0),
    )
    channel, recipient = _manager_channel(manager_alerts, sales_inbox)
    subject = f"{len(ids)} lead{'s' if len(ids) != 1 else ''} in {queue}" + (f", {at_risk} at SLA risk"
                                                                            if at_risk else "")
    row = {"idempotency_key": _digest_key("unassigned", ids), "lead_id": ids[0] if len(ids) == 1 else None,
           "kind": "manager_notice", "channel": channel, "recipient": recipient, "subject": subject, "body": body}
    return _frame([row], now)


def _masked(email: object) -> str | None:
    """A lead's address as notices show it: masked (j***@a***.com), never whole."""
    from leadflow.domain.spam import mask_email

    return mask_email(str(email)) if isinstance(email, str) and email else None


def _owner(name: object, owner_id: object) -> str:
    """A task owner as notices name them: the rep's name, else `rep <id>`, else unassigned."""
    if isinstance(name, str) and name.strip():
        return name.strip()
    return f"rep {int(owner_id)}" if pd.notna(owner_id) else "unassigned"


def sla_risk_notice(overdue: pd.DataFrame, manager_alerts: bool, sales_inbox: str,
                    now: datetime) -> pd.DataFrame:
    """One notice about open tasks past their SLA (keyed by those tasks, so each breach is reported once); to the
    `manager` channel when `manager_alerts`, else emailed to `sales_inbox`."""
    if overdue.empty:
        return _frame([], now)
    tasks = [
        {"id": int(t["id"]), "lead_id": int(t["lead_id"]), "kind": t["kind"],
         "owner": _owner(t.get("owner_name"), t["owner_id"]), "lead": _masked(t.get("lead_email")),
         "due_at": pd.Timestamp(t["due_at"]).strftime("%Y-%m-%d %H:%M UTC")}
        for t in overdue.sort_values("due_at").to_dict("records")
    ]
    body = render("manager_notice_sla_risk.j2", count=len(tasks), tasks=tasks[:LISTED_IDS],
                  more=max(len(tasks) - LISTED_IDS, 0))
    channel, recipient = _manager_channel(manager_alerts, sales_inbox)
    row = {"idempotency_key": _digest_key("sla_risk", [t["id"] for t in tasks]), "lead_id": None,
           "kind": "manager_notice", "channel": channel, "recipient": recipient,
           "subject": f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} past SLA", "body": body}
    return _frame([row], now)


def ops_reason(message: str | None, mask: Any = None) -> str:
    """The reason an ops alert gives: the failure message's first line (addresses masked when `mask` is given)."""
    text = (message or "").strip()
    first = text.splitlines()[0] if text else "no message"
    return mask(first) if mask else first


def ops_alert_body(flow_name: str, run_name: str, run_id: str, state_name: str, reason: str) -> str:
    """The text of an ops alert; repeats are recognized by its flow and its reason (see steps.delivery)."""
    return f"Flow {flow_name}, run {run_name} ({run_id}) ended {state_name}: {reason}"


def is_repeat(body: str, flow_name: str, reason: str) -> bool:
    """Whether an earlier ops alert's body tells of the same flow failing for the same reason."""
    return body.startswith(f"Flow {flow_name}, run ") and body.endswith(f": {reason}")


def ops_alert(flow_name: str, run_name: str, run_id: str, state_name: str, message: str | None,
              recipient: str | None, now: datetime) -> dict[str, Any]:
    """The ops alert of a failed run: one outbox row per flow run, to `recipient` (the `ops` channel name, never a
    URL); withdrawn when no channel is configured (`recipient` None)."""
    from leadflow.domain.privacy import mask_addresses

    reason = ops_reason(message, mask_addresses)
    return {
        "idempotency_key": message_key("ops_alert", run_id),
        "lead_id": None,
        "kind": "ops_alert",
        "channel": "apprise",
        "recipient": recipient or "",
        "subject": f"[leadflow] {flow_name} run {run_name} {state_name.lower()}"[:500],
        "body": ops_alert_body(flow_name, run_name, run_id, state_name, reason),
        "status": "pending" if recipient else "withdrawn",
        "last_error": None if recipient else "no ops_alert_urls configured",
        "created_at": now,
    }


def monthly_report_notice(month: str, headline: dict[str, Any], sla: dict[str, Any], links: list[str],
                          recipient: str) -> dict[str, Any]:
    """The manager's notice of a month's report: the headline figures and links to the report files, to
    `recipient` (the `manager` channel name, never a URL)."""
    from leadflow.domain.reports import pct

    body = "\n".join([
        f"Monthly lead report {month}",
        f"New leads: {headline['new_leads']:,} (MoM {pct(headline['new_leads_mom_pct'], signed=True)}, "
        f"YoY {pct(headline['new_leads_yoy_pct'], signed=True)})",
        f"Submissions: {headline['submissions']:,} ({headline['repeat_submissions']:,} repeat); spam leads: "
        f"{headline['spam_leads']:,}",
        f"Converted from this month's cohort: {headline['converted']:,}; SLA met: "
        f"{pct(sla['rate'])} of {sla['eligible']:,} P1/P2 leads",
        *(f"Report: {link}" for link in links),
    ])
    return {"idempotency_key": message_key("monthly_report", month), "kind": "monthly_report", "channel": "apprise",
            "recipient": recipient, "subject": f"Monthly lead report {month}", "body": body}
