"""The report renderers on a hand-built month: Markdown, CSV, JSON and the offline HTML page."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadflow.domain.reports import MonthlyReport, cohort_funnels, cohort_months, monthly_volume, sla_compliance
from leadflow.io import report_files as rr
from tests.unit.test_report import MONTH, make_events, make_leads, make_submissions

EVIL = '<script>alert("x")</script>'


def build_report(month: str = MONTH, source_label: str | None = None) -> MonthlyReport:
    """A MonthlyReport from the hand-built tables of test_report (optionally with a hostile source name)."""
    leads = make_leads()
    if source_label is not None:
        leads.loc[leads["id"] == 1, "first_touch_source"] = source_label
    events, subs = make_events(), make_submissions()
    start = pd.Timestamp(f"{month}-01", tz="UTC")
    as_of = start + pd.offsets.MonthBegin(1)
    volume = monthly_volume(leads, subs, leads.iloc[0:0], leads.iloc[0:0], month)
    funnel, reasons = cohort_funnels(events, leads, cohort_months(month, 2), as_of)
    tasks = pd.DataFrame({"lead_id": [1, 2], "kind": ["qualification"] * 2,
                          "due_at": pd.to_datetime(["2025-03-03 04:00", "2025-03-05 02:00"], utc=True),
                          "completed_at": pd.to_datetime([None, None], utc=True)})
    sla = sla_compliance(leads, tasks, events, month)
    months = rr.history_months(month)
    history = pd.DataFrame({"month": months * 3, "source": ["web_form"] * 12 + ["event"] * 12 + [
        source_label or "linkedin_ads"] * 12, "new_leads": list(range(1, 13)) + [3] * 12 + [5] * 12})
    new = int(volume["new_leads"].iloc[0])
    return MonthlyReport(month=month, as_of=as_of, generated_at=pd.Timestamp("2025-04-01 06:00", tz="UTC"),
                         volume=volume, funnel=funnel, reasons=reasons, sla=sla, history=history,
                         direct={"new_leads": new, "spam_leads": int(volume["spam_leads"].iloc[0])})


def test_json_carries_new_leads_and_is_plain_json():
    payload = rr.to_json(build_report())
    assert payload["new_leads"] == 5 and payload["spam_leads"] == 1 and payload["month"] == MONTH
    # P1/P2 March leads 1, 2, 4, 7; only 1 and 2 have a due time, and only lead 1 was worked before it.
    assert payload["sla"] == {"eligible": 4, "met": 1, "rate": 0.25, "no_deadline": 2}
    text = rr.to_json_text(build_report())
    assert json.loads(text)["funnel"][0]["cohort"] == MONTH
    assert "NaN" not in text


def test_markdown_lists_totals_sources_funnel_and_reasons():
    md = rr.to_markdown(build_report())
    assert "**New leads:** 5" in md and "**Spam (not counted above):** 1 leads" in md
    assert "| web_form | 2 |" in md
    # As of the month's end lead 3 (qualified in April) has not reached qualified: only lead 1 has, lead 2 skipped it.
    assert "| Qualified | 1 | 2 | 100.0% | 4.0 h |" in md
    assert "| Converted | 1 |" in md and "| no_budget | 1 | 100.0% |" in md


def test_empty_month_renders_honestly():
    report = build_report("2025-07")
    md = rr.to_markdown(report)
    assert "No leads were first touched this month." in md
    html = rr.to_html(report)
    assert "No leads in this month" in html
    assert rr.to_json(report)["new_leads"] == 0


def test_csv_tables_round_trip(tmp_path):
    report = build_report()
    files = rr.write_files(report, tmp_path, ["csv"])["csv"]
    assert sorted(p.rsplit("/", 1)[-1] for p in files) == [
        f"monthly-report-{MONTH}-{stem}.csv" for stem in ("disqualification_reasons", "funnel", "history", "volume")]
    volume = pd.read_csv(next(p for p in files if p.endswith("-volume.csv")))
    assert volume.loc[0, "new_leads"] == 5 and list(volume.columns[:3]) == ["dimension", "value", "new_leads"]


def test_html_is_self_contained_and_escapes_data():
    html = rr.to_html(build_report(source_label=EVIL))
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert html.count("<svg") == 2
    # 12 month labels on the volume chart, 7 stage bars on the funnel chart
    assert html.count('text-anchor="middle" fill="#374151"') == 12


def test_unknown_file_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown report format"):
        rr.write_files(build_report(), tmp_path, ["pdf"])
