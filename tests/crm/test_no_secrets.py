"""Alert URLs are secrets: outbox rows name their channel (manager, ops, rep:<id>), never the URL, on SQLite and
PostgreSQL; Deliver Outbox resolves the URL at send time and it reaches the right webhook."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.config.settings import get_settings
from leadflow.crm import reference
from leadflow.crm.outbox import outbox_frame, queue_messages
from leadflow.crm.schema import Base, Lead
from leadflow.domain import reports as rpt
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import QualificationSummary
from leadflow.steps import reports as report_steps
from leadflow.steps.delivery import DeliveryConfig, deliver_outbox, queue_monthly_report_notice, queue_ops_alert
from leadflow.steps.qualification import local_steps, qualify
from leadflow.steps.sla import watch_task_slas
from tests.flows.test_delivery import webhook  # noqa: F401  (the local webhook fixture)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
# Distinctive tokens in each secret URL's path: any of them found anywhere means a URL leaked.
TOKENS = {"manager": "mgr-s3cret-9f1c2e7a", "ops": "ops-s3cret-41d7b0c3", "rep": "rep-s3cret-c08a5e66"}
HOT = {"email": "cto@acme.com", "first_name": "Ada", "company": "ACME Corp.", "job_title": "CTO",
       "seniority": "c_level", "employee_count": 1200, "company_size": "1001-5000", "demo_requested": True,
       "country": "US"}
COLD = {"email": "bo@brasil-co.com.br", "company": "Brasil Co", "country": "BR", "job_title": "CEO"}


def seed(crm, rows: list[dict]) -> list[int]:
    """Leads as intake leaves them (a work email's domain is the company domain); returns their ids."""
    ts = pd.Timestamp(NOW) - pd.Timedelta(hours=1)  # fresh: within the policy's message window
    leads = [{"email_domain": r["email"].split("@")[1], "company_domain": r["email"].split("@")[1], "status": "new",
              "is_spam": False, "do_not_contact": False, "first_touch_at": ts, "last_touch_at": ts,
              "first_touch_source": "web_form", "last_touch_source": "web_form", **r} for r in rows]
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame(leads), NOW)
    with crm.engine.connect() as conn:
        return sorted(conn.execute(select(Lead.id)).scalars().all())


def dump(crm) -> dict[str, str]:
    """Every table of the CRM as one text per table."""
    with crm.engine.connect() as conn:
        return {name: "\n".join(repr(dict(r)) for r in conn.execute(select(table)).mappings())
                for name, table in Base.metadata.tables.items()}


def leaks(crm, folder: Path, log: str, tokens: list[str], skip_files: tuple[Path, ...] = ()) -> list[str]:
    """Where any token shows up: tables, files under `folder` (database files included), the log."""
    found = [f"table {name}" for name, text in dump(crm).items() if any(t in text for t in tokens)]
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p not in skip_files):
        data = path.read_bytes()
        found += [f"file {path.relative_to(folder)}" for t in tokens if t.encode() in data]
    return found + [f"log ({t})" for t in tokens if t in log]


@pytest.fixture
def secret_urls(webhook, tmp_path, monkeypatch):  # noqa: F811
    """Secret manager and ops URLs in the settings, pointing at the local webhook; report and outbox files in tmp."""
    urls = {name: f"{webhook['url']}/{token}" for name, token in TOKENS.items()}
    monkeypatch.setenv("LEADFLOW_MANAGER_ALERT_URLS", urls["manager"])
    monkeypatch.setenv("LEADFLOW_OPS_ALERT_URLS", urls["ops"])
    monkeypatch.setenv("LEADFLOW_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    yield urls
    get_settings.cache_clear()


def test_no_alert_url_is_stored_and_each_alert_reaches_its_url(crm, secret_urls, webhook, tmp_path,  # noqa: F811
                                                                caplog):
    caplog.set_level(logging.INFO)
    for name in ("leadflow", "apprise"):
        caplog.set_level(logging.DEBUG, logger=name)
    # US reps with an alert URL (it stays in sales_reps.alert_url, the only place it may be).
    reps = pd.read_csv(reference.DATA_DIR / "sales_reps.csv", dtype=str, keep_default_na=False)
    reps.loc[reps["territories"].str.contains("US"), "alert_url"] = secret_urls["rep"]
    reps_csv = tmp_path / "input" / "sales_reps.csv"
    reps_csv.parent.mkdir()
    reps.to_csv(reps_csv, index=False)
    reference.load_sales_reps(crm, reps_csv)
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")

    # Qualification (a hot US lead for the rep, a Brazilian lead nobody covers -> manager notice), as the flow runs it.
    ids = seed(crm, [HOT, COLD])
    settings = get_settings()
    manager_urls = settings.manager_alert_urls.get_secret_value()  # what tasks/qualification.py passes
    policy = load_qualification_policy()
    qualify(local_steps(crm, manager_urls=manager_urls), ids, policy,
            QualificationSummary(replay=False, policy_version=policy.version), replay=False, timezone="UTC",
            clock=lambda: NOW, chunk_size=1000)
    # The SLA watch a month later, an ops alert of a failed run, the month's report notice.
    assert watch_task_slas(crm, manager_urls, settings.sender_email, NOW + timedelta(days=30)).notices == 1
    queue_ops_alert("lead-intake", "brave-otter", "3f2b0c1e-0000-4000-8000-000000000001", "Failed", "boom",
                    store=crm)
    month = NOW.strftime("%Y-%m")
    as_of = rpt.month_bounds(month)[1]
    report = report_steps.assemble_report(month, as_of, report_steps.aggregate_monthly_lead_volume(crm, month),
                                          report_steps.lead_conversion_report(crm, month, 3, as_of))
    published = report_steps.publish_monthly_report(crm, report, ["html", "md", "csv"], [],
                                                     settings.report_dir)
    queue_monthly_report_notice(crm, report, published["files"])

    with crm.engine.connect() as conn:
        rep_id = conn.execute(select(Lead.owner_id).where(Lead.email == HOT["email"])).scalar_one()
    apprise = outbox_frame(crm).query("channel == 'apprise'")
    assert Counter(zip(apprise["kind"], apprise["recipient"], strict=True)) == Counter({
        ("manager_notice", "manager"): 2, ("ops_alert", "ops"): 1, ("monthly_report", "manager"): 1,
        ("rep_alert", f"rep:{rep_id}"): 1})
    # Only the rep's own row and the reps file we loaded hold the rep's URL; the manager and ops URLs are nowhere.
    inputs = (reps_csv, tmp_path / "crm.db", tmp_path / "crm.db-wal")
    assert leaks(crm, tmp_path, caplog.text, [TOKENS["manager"], TOKENS["ops"]]) == []
    assert leaks(crm, tmp_path, caplog.text, [TOKENS["rep"]], skip_files=inputs) == ["table sales_reps"]

    result = deliver_outbox(crm, DeliveryConfig(outbox_dir=settings.outbox_dir), now=lambda: datetime.now(UTC),
                            sleep=lambda _: None)
    assert result.failed == result.retry_later == 0 and result.by_kind["rep_alert"] == 1
    arrived = Counter(path.rsplit("/", 1)[-1] for path in webhook["paths"])
    assert arrived == {TOKENS["manager"]: 3, TOKENS["ops"]: 1, TOKENS["rep"]: 1}
    titles = {post["title"] for post, path in zip(webhook["posts"], webhook["paths"], strict=True)
              if path.endswith(TOKENS["ops"])}
    assert titles == {"[leadflow] lead-intake run brave-otter failed"}
    assert set(outbox_frame(crm)["status"]) == {"sent"}
    # Sending wrote no URL back either.
    assert leaks(crm, tmp_path, caplog.text, [TOKENS["manager"], TOKENS["ops"]]) == []
    assert leaks(crm, tmp_path, caplog.text, [TOKENS["rep"]], skip_files=inputs) == ["table sales_reps"]


def test_rows_with_a_url_still_go_out_and_a_channel_without_one_fails_naming_only_the_channel(
        crm, webhook, monkeypatch):  # noqa: F811
    monkeypatch.delenv("LEADFLOW_MANAGER_ALERT_URLS", raising=False)
    get_settings.cache_clear()
    now = datetime.now(UTC)
    queue_messages(crm, pd.DataFrame({
        "idempotency_key": ["old", "mgr", "rep", "odd"], "lead_id": pd.array([None] * 4, dtype="Int64"),
        "kind": "manager_notice", "channel": "apprise",
        "recipient": [f"{webhook['url']}/queued-before", "manager", "rep:999", "unconfigured"],
        "subject": "S", "body": "B", "status": "pending", "attempts": 0, "created_at": now}))
    result = deliver_outbox(crm, DeliveryConfig(), now=lambda: datetime.now(UTC), sleep=lambda _: None)
    assert (result.sent, result.failed) == (1, 3) and webhook["paths"] == ["/hook/queued-before"]
    errors = outbox_frame(crm).set_index("idempotency_key")["last_error"]
    assert "alert channel 'manager' has no URL (LEADFLOW_MANAGER_ALERT_URLS is not set)" in errors["mgr"]
    assert "alert channel 'rep:999' has no URL" in errors["rep"]
    assert "unknown alert channel 'unconfigured'" in errors["odd"]
