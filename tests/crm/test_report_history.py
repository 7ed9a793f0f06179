"""History-true monthly reports on SQLite and PostgreSQL: imported history counts in the months it happened.

Leads with submissions in January to March 2024 are imported today (so every row is written in the import
month); each month's report, built through the report steps, must count new leads, submissions, repeats and the
cohort funnels by first touch, and agree with a count done here from the imported rows themselves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pandas as pd

from leadflow.domain import reports as rpt
from leadflow.steps import reports as report_steps
from leadflow.steps.status import import_status_file
from tests.helpers import lead, run_intake, write_csv

MONTHS = ["2024-01", "2024-02", "2024-03"]


def person(name: str, at: str, source: str = "web_form") -> dict:
    """One plausible inquiry (not spam) from name@<name>-industries.com at `at`."""
    return lead(f"{name}@{name}-industries.com", f"{at}T10:00:00Z", source, first_name=name.title(),
                last_name="Example", company=f"{name.title()} Industries", job_title="Head of Operations",
                country="US", message="We would like a demo for our team next quarter.")


# The first file: a1 touches again in March, a2 twice in January, b2 again in March, d1 only in March (so far).
FIRST_FILE = [
    person("aaron", "2024-01-05"), person("abigail", "2024-01-09", "event"), person("abigail", "2024-01-20"),
    person("adrian", "2024-01-28", "referral"), person("aaron", "2024-03-14"),
    person("barbara", "2024-02-02"), person("bernard", "2024-02-11", "event"), person("beatrice", "2024-02-19"),
    person("bruno", "2024-02-26", "referral"), person("bernard", "2024-03-02"),
    person("celine", "2024-03-08"), person("cyril", "2024-03-30", "event"), person("dorian", "2024-03-21"),
]
# Imported later still: dorian's first touch moves to February, and a January lead turns up.
SECOND_FILE = [person("dorian", "2024-02-15", "event"), person("edith", "2024-01-17")]

# Status changes made in the sales tool at their real times (one after the March reports' cut-off).
STATUS = [  # email name, status, reason, at
    ("aaron", "Working", "", "2024-01-10 09:00"), ("aaron", "Qualified", "", "2024-01-20 09:00"),
    ("abigail", "Working", "", "2024-01-22 09:00"), ("abigail", "Disqualified", "no_budget", "2024-02-03 09:00"),
    ("bernard", "Working", "", "2024-02-12 09:00"), ("bernard", "discovery_call_booked", "", "2024-03-05 09:00"),
    ("barbara", "Working", "", "2024-02-29 23:00"),
    ("celine", "Working", "", "2024-03-09 09:00"), ("adrian", "Working", "", "2024-04-02 09:00"),
]


def expected_volume(rows: list[dict], month: str) -> dict[str, int]:
    """New leads, submissions and repeats of a month counted straight from the imported rows."""
    first: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["submitted_at"]):
        first.setdefault(row["email"], row["submitted_at"][:7])
    in_month = [r for r in rows if r["submitted_at"][:7] == month]
    new = sum(1 for m in first.values() if m == month)
    return {"new_leads": new, "submissions": len(in_month), "repeat_submissions": len(in_month) - new}


def expected_sources(rows: list[dict], month: str) -> dict[str, int]:
    """New leads of a month by the source of their earliest touch."""
    first: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r["submitted_at"]):
        first.setdefault(row["email"], row)
    counts: dict[str, int] = defaultdict(int)
    for row in first.values():
        if row["submitted_at"][:7] == month:
            counts[row["source"]] += 1
    return dict(counts)


def expected_funnel(rows: list[dict], cohort: str, as_of: pd.Timestamp) -> dict[str, tuple[int, int | None]]:
    """(reached, passed) by stage of a first-touch cohort, from the rows and the status changes before as_of."""
    first: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["submitted_at"]):
        first.setdefault(row["email"].split("@")[0], row["submitted_at"][:7])
    members = {name for name, month in first.items() if month == cohort}
    entered: dict[str, set[str]] = {name: {"new"} for name in members}
    for name, status, _reason, at in STATUS:
        if name in members and pd.Timestamp(at, tz="UTC") < as_of:
            entered[name].add(status.lower())
    out: dict[str, tuple[int, int | None]] = {}
    for rank, stage in enumerate(rpt.MAIN_STAGES):
        later = set(rpt.MAIN_STAGES[rank:])
        out[stage] = (sum(stage in s for s in entered.values()), sum(bool(s & later) for s in entered.values()))
    for stage in rpt.EXIT_STAGES:
        out[stage] = (sum(stage in s for s in entered.values()), None)
    return out


def build(crm, month: str, tmp_path) -> rpt.MonthlyReport:
    """A month's report through the steps the flow's tasks call, in the flow's order (published, as the flow does)."""
    as_of = rpt.month_bounds(month)[1]
    volume = report_steps.aggregate_monthly_lead_volume(crm, month)
    conversion = report_steps.lead_conversion_report(crm, month, 3, as_of)
    report = report_steps.assemble_report(month, as_of, volume, conversion)
    checks = report_steps.check_report(report)
    report_steps.publish_monthly_report(crm, report, ["md", "json"], checks, tmp_path / "reports")
    return report


def funnel_of(report: rpt.MonthlyReport, cohort: str) -> dict[str, tuple[int, int | None]]:
    """(reached, passed) by stage of one cohort's overall funnel in a report."""
    rows = report.funnel.loc[(report.funnel["cohort"] == cohort) & (report.funnel["breakdown"] == "all")]
    return {r.stage: (int(r.reached), None if pd.isna(r.passed) else int(r.passed)) for r in rows.itertuples()}


def new_leads(crm, month: str) -> int:
    """New leads of a month from the volume step alone (no checks, nothing published)."""
    volume = report_steps.aggregate_monthly_lead_volume(crm, month).volume
    return int(volume.loc[volume["dimension"] == "total", "new_leads"].iloc[0])


def test_imported_history_is_reported_in_the_months_it_happened(crm, tmp_path):
    run_intake(crm, write_csv(tmp_path / "history.csv", FIRST_FILE))
    # Before the second import: January without edith, dorian first touched in March.
    assert [new_leads(crm, m) for m in MONTHS] == [expected_volume(FIRST_FILE, m)["new_leads"] for m in MONTHS]
    assert [new_leads(crm, m) for m in MONTHS] == [3, 4, 3]

    run_intake(crm, write_csv(tmp_path / "later.csv", SECOND_FILE))
    status = tmp_path / "status.csv"
    status.write_text("Email Address,Lead Status,Disqualification Reason,Last Modified\n" + "".join(
        f"{name}@{name}-industries.com,{s},{reason},{at}\n" for name, s, reason, at in STATUS))
    applied = import_status_file(crm, status, datetime.now(UTC))
    assert (applied.applied, applied.rejected) == (len(STATUS), [])

    rows = FIRST_FILE + SECOND_FILE
    for month in MONTHS:
        report = build(crm, month, tmp_path)
        want = expected_volume(rows, month)
        got = {name: report.total(name) for name in want}
        assert got == want, month
        assert report.total("spam_leads") == 0 and report.direct["new_leads"] == want["new_leads"]
        sources = report.volume.loc[report.volume["dimension"] == "source"].set_index("value")["new_leads"]
        assert {k: int(v) for k, v in sources.items() if v} == expected_sources(rows, month), month
        for cohort in rpt.cohort_months(month, 3):
            assert funnel_of(report, cohort) == expected_funnel(rows, cohort, report.as_of), (month, cohort)
        stored = report_steps.report_store.read_report_tables(crm, month)["report_runs"]
        assert int(stored["new_leads"].iloc[0]) == want["new_leads"]
    # The counts above, spelled out: the second file added edith to January and moved dorian to February.
    assert [expected_volume(rows, m)["new_leads"] for m in MONTHS] == [4, 5, 2]
    assert funnel_of(report, "2024-02")["discovery_call_booked"] == (1, 1)  # bernard, by the March cut-off

    # The report says what its numbers are as of.
    md = (tmp_path / "reports" / "2024-03" / "monthly-report-2024-03.md").read_text()
    assert f"Data as of {report.generated_at:%Y-%m-%d %H:%M} UTC" in md
    assert "first touch" in md and "before 2024-04-01 00:00 UTC" in md

    # The import month itself gains nothing from the history written in it.
    now = pd.Timestamp.now(tz="UTC")
    assert new_leads(crm, f"{now.year:04d}-{now.month:02d}") == 0
