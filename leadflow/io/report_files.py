"""The monthly report as Markdown, CSV files, a self-contained HTML page with inline SVG charts, and JSON."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from leadflow.domain.privacy import neutralize_formulas
from leadflow.domain.reports import MAIN_STAGES, MonthlyReport, pct

FORMATS: tuple[str, ...] = ("md", "csv", "html", "json")
PALETTE = ("#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#64748b")
MAX_SOURCES = 8
OTHER = "other"
STAGE_LABELS = {"new": "New", "working": "Working", "qualified": "Qualified",
                "discovery_call_booked": "Discovery call booked", "converted": "Converted",
                "disqualified": "Disqualified", "recycled": "Recycled"}

_env = Environment(loader=PackageLoader("leadflow", "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True)


def report_name(month: str) -> str:
    """The stable base name of a month's report files and artifacts."""
    return f"monthly-report-{month}"


# --- small formatting helpers --------------------------------------------------------------------------------


def _count(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


_pct = pct


def as_of_line(report: MonthlyReport) -> str:
    """What the numbers are as of: the CRM when the report was built, and the funnel's cut-off."""
    # Later imports can still add leads to a past month (a lead counts in the month of its first touch), so the
    # reader needs to know when the CRM was read.
    return (f"Data as of {report.generated_at:%Y-%m-%d %H:%M} UTC; leads count in the month of their first touch; "
            f"funnel status changes before {report.as_of:%Y-%m-%d %H:%M} UTC")


def _hours(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.1f} h"


def _main_funnel(report: MonthlyReport) -> pd.DataFrame:
    frame = report.funnel
    return frame.loc[(frame["cohort"] == report.month) & (frame["breakdown"] == "all")].set_index("stage")


# --- JSON ----------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else str(value)


def _table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_plain(row) for row in frame.astype(object).to_dict("records")]


def to_json(report: MonthlyReport) -> dict[str, Any]:
    """The report as plain JSON data; `new_leads` is the month's total of new leads (spam excluded)."""
    return {
        **_plain(report.headline()),
        "as_of": report.as_of.isoformat(),
        "generated_at": report.generated_at.isoformat(),
        "data_as_of": report.generated_at.isoformat(),
        "counted_by": "first_touch",
        "direct_counts": _plain(report.direct),
        "volume": _table(report.volume),
        "funnel": _table(report.funnel),
        "disqualification_reasons": _table(report.reasons),
        "history": _table(report.history),
        "followup": _plain(report.followup),
    }


def to_json_text(report: MonthlyReport) -> str:
    """The JSON report as text."""
    return json.dumps(to_json(report), indent=2, ensure_ascii=False)


# --- Markdown ------------------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: MonthlyReport) -> str:
    """A short Markdown summary for the Prefect artifact and the manager's notice."""
    head = report.headline()
    sla = report.sla
    lines = [
        f"# Monthly lead report {report.month}",
        "",
        f"_{as_of_line(report)}._",
        "",
        f"- **New leads:** {_count(head['new_leads'])} (previous month {_count(head['new_leads_prev'])}, "
        f"{_pct(head['new_leads_mom_pct'], signed=True)}; last year {_count(head['new_leads_last_year'])}, "
        f"{_pct(head['new_leads_yoy_pct'], signed=True)})",
        f"- **Submissions:** {_count(head['submissions'])}, of which repeat {_count(head['repeat_submissions'])}",
        f"- **Spam (not counted above):** {_count(head['spam_leads'])} leads",
        f"- **SLA (P1/P2 contacted in time):** {_count(sla['met'])} of {_count(sla['eligible'])} "
        f"({_pct(sla['rate'])}); {_count(sla['no_deadline'])} without a due time",
        "",
    ]
    if head["new_leads"] == 0:
        lines += ["No leads were first touched this month.", ""]
    volume = report.volume
    sources = volume.loc[volume["dimension"] == "source"]
    if len(sources):
        lines += ["## New leads by source", "", _md_table(
            ["source", "new leads", "submissions", "repeat", "prev. month", "MoM", "YoY"],
            [[str(r.value), _count(r.new_leads), _count(r.submissions), _count(r.repeat_submissions),
              _count(r.new_leads_prev), _pct(r.new_leads_mom_pct, signed=True), _pct(r.new_leads_yoy_pct, signed=True)]
             for r in sources.itertuples()],
        ), ""]
    stages = _main_funnel(report)
    if len(stages):
        lines += [f"## Funnel of the {report.month} cohort (as of {report.as_of:%Y-%m-%d})", "", _md_table(
            ["stage", "reached", "passed", "to next", "median time to next"],
            [[STAGE_LABELS.get(str(stage), str(stage)), _count(r["reached"]), _count(r["passed"]),
              _pct(r["conversion_to_next"]), _hours(r["median_hours_to_next"])] for stage, r in stages.iterrows()],
        ), ""]
    reasons = report.reasons.loc[(report.reasons["cohort"] == report.month) & (report.reasons["breakdown"] == "all")]
    if len(reasons):
        lines += ["## Disqualification reasons", "", _md_table(
            ["reason", "leads", "share"],
            [[str(r.reason), _count(r.leads), _pct(r.share)] for r in reasons.itertuples()],
        ), ""]
    lines += _followup_markdown(report.followup)
    return "\n".join(lines)


def _followup_markdown(figures: dict[str, Any]) -> list[str]:
    """The follow-up and recycling section (none in reports without follow-up figures)."""
    if not figures:
        return []
    lines = ["## Follow-up and recycling", "",
             f"- **Active sequences:** {_count(figures['active_sequences'])}; stuck (a rep step open over a week past "
             f"its deadline): {_count(figures['stuck_leads'])}",
             f"- **Rep steps done on time:** {_count(figures['rep_steps_on_time'])} of "
             f"{_count(figures['rep_steps_due'])} ({_pct(figures['on_time_rate'])})",
             f"- **Recycled or returning leads re-engaged:** {_count(figures['reengaged'])}, converted since: "
             f"{_count(figures['reengaged_converted'])} ({_pct(figures['reengaged_conversion'])})", ""]
    if figures["leads_per_step"]:
        lines += [_md_table(["cadence", "waiting for step", "leads"],
                            [[str(r["cadence"]), str(r["step"]), _count(r["leads"])]
                             for r in figures["leads_per_step"]]), ""]
    return lines


# --- CSV -----------------------------------------------------------------------------------------------------


def csv_tables(report: MonthlyReport) -> dict[str, pd.DataFrame]:
    """The tables the CSV form writes, by file stem."""
    return {"volume": report.volume, "funnel": report.funnel, "disqualification_reasons": report.reasons,
            "history": report.history}


def to_csv_text(frame: pd.DataFrame) -> str:
    """One table as CSV text, its text cells unable to start a spreadsheet formula (CSV injection)."""
    buffer = io.StringIO()
    neutralize_formulas(frame).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


# --- HTML with inline SVG ------------------------------------------------------------------------------------


def _svg_text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", fill: str = "#1f2937",
              weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}">{escape(text)}</text>')


def _empty_chart(width: int, height: int, message: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img"><rect width="{width}" height="{height}" fill="#f8fafc" stroke="#cbd5e1"/>'
        f"{_svg_text(width / 2, height / 2, message, size=14, anchor='middle', fill='#64748b')}</svg>"
    )


def volume_chart(history: pd.DataFrame, months: list[str], width: int = 760, height: int = 320) -> Markup:
    """Stacked bars of new leads by source for each month (the biggest sources, the rest as 'other')."""
    if history.empty or int(history["new_leads"].sum()) == 0:
        return _empty_chart(width, height, "No leads in the last 12 months")
    totals = history.groupby("source")["new_leads"].sum().sort_values(ascending=False, kind="stable")
    top = list(totals.index[:MAX_SOURCES])
    labelled = history.assign(source=history["source"].where(history["source"].isin(top), OTHER))
    table = labelled.pivot_table(index="month", columns="source", values="new_leads", aggfunc="sum", fill_value=0)
    table = table.reindex(index=months, fill_value=0)
    order = [*top, *([OTHER] if OTHER in table.columns and OTHER not in top else [])]
    table = table.reindex(columns=order, fill_value=0)
    left, right, top_pad, bottom = 56, 170, 16, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    peak = max(int(table.sum(axis=1).max()), 1)
    step = plot_w / len(months)
    bar = step * 0.7
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="New leads by source, last 12 months">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    for tick in range(5):
        value = peak * tick / 4
        y = top_pad + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(_svg_text(left - 6, y + 4, f"{value:,.0f}", size=10, anchor="end", fill="#6b7280"))
    for i, month in enumerate(months):
        x = left + i * step + (step - bar) / 2
        base = top_pad + plot_h
        for j, source in enumerate(order):
            count = int(table.loc[month, source])
            if count <= 0:
                continue
            h = plot_h * count / peak
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(f"{month} {source}: {count:,}")}'
                         f"</title></rect>")
        parts.append(_svg_text(x + bar / 2, top_pad + plot_h + 16, month[2:], size=10, anchor="middle",
                               fill="#374151"))
    for j, source in enumerate(order):
        y = top_pad + 8 + j * 20
        parts.append(f'<rect x="{left + plot_w + 16}" y="{y}" width="12" height="12" '
                     f'fill="{PALETTE[j % len(PALETTE)]}"/>')
        parts.append(_svg_text(left + plot_w + 34, y + 10, source[:22], size=11))
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel_chart(report: MonthlyReport, width: int = 760, height: int = 300) -> Markup:
    """Horizontal bars of the month's cohort: leads that passed each stage, with stage-to-stage conversion."""
    stages = _main_funnel(report)
    if stages.empty or int(stages.loc["new", "passed"] if "new" in stages.index else 0) == 0:
        return _empty_chart(width, height, "No leads in this month's cohort")
    label_w, row_h, top_pad = 180, 34, 14
    plot_w = width - label_w - 150
    peak = max(int(stages.loc["new", "passed"]), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Funnel of the month\'s cohort">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    rows = [(s, stages.loc[s, "passed"]) for s in MAIN_STAGES] + [
        (s, stages.loc[s, "reached"]) for s in ("disqualified", "recycled") if s in stages.index]
    for i, (stage, count) in enumerate(rows):
        count = 0 if pd.isna(count) else int(count)
        y = top_pad + i * row_h
        w = max(plot_w * count / peak, 1.0)
        color = PALETTE[i % len(PALETTE)] if stage in MAIN_STAGES else "#94a3b8"
        parts.append(_svg_text(label_w - 8, y + 18, STAGE_LABELS.get(stage, stage), size=12, anchor="end"))
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 10}" fill="{color}">'
                     f"<title>{escape(f'{stage}: {count:,}')}</title></rect>")
        note = f"{count:,}"
        if stage in MAIN_STAGES and not pd.isna(stages.loc[stage, "conversion_to_next"]):
            note += f"  → {_pct(stages.loc[stage, 'conversion_to_next'])}"
        parts.append(_svg_text(label_w + w + 8, y + 18, note, size=12, weight="bold"))
    parts.append("</svg>")
    return Markup("".join(parts))


def history_months(month: str, count: int = 12) -> list[str]:
    """The count months up to and including a month, oldest first."""
    from leadflow.domain.reports import cohort_months

    return list(reversed(cohort_months(month, count)))


def to_html(report: MonthlyReport) -> str:
    """A self-contained page (no scripts, no external files) a manager can open offline."""
    head = report.headline()
    stages = _main_funnel(report)
    funnel_rows = [
        {"stage": STAGE_LABELS.get(str(stage), str(stage)), "reached": _count(r["reached"]),
         "passed": _count(r["passed"]), "conversion": _pct(r["conversion_to_next"]),
         "hours": _hours(r["median_hours_to_next"])}
        for stage, r in stages.iterrows()
    ]
    volume = report.volume
    breakdowns = []
    for dimension in ("source", "channel", "country", "tier", "owner"):
        part = volume.loc[volume["dimension"] == dimension]
        breakdowns.append({"name": dimension, "rows": [
            {"value": str(r.value), "new": _count(r.new_leads), "subs": _count(r.submissions),
             "repeat": _count(r.repeat_submissions), "spam": _count(r.spam_leads), "prev": _count(r.new_leads_prev),
             "mom": _pct(r.new_leads_mom_pct, signed=True), "yoy": _pct(r.new_leads_yoy_pct, signed=True)}
            for r in part.itertuples()]})
    reasons = report.reasons.loc[(report.reasons["cohort"] == report.month) & (report.reasons["breakdown"] == "all")]
    cohorts = report.funnel.loc[(report.funnel["breakdown"] == "all")]
    cohort_rows = []
    for cohort, part in cohorts.groupby("cohort", sort=False):
        by_stage = part.set_index("stage")
        cohort_rows.append({"cohort": cohort, "cells": [_count(by_stage.loc[s, "passed"]) if s in by_stage.index
                                                        else "–" for s in MAIN_STAGES]})
    template = _env.get_template("report.html.j2")
    return template.render(
        report=report, head=head, sla=report.sla, fmt_count=_count, fmt_pct=_pct,
        volume_svg=volume_chart(report.history, history_months(report.month)), funnel_svg=funnel_chart(report),
        funnel_rows=funnel_rows, breakdowns=breakdowns,
        reasons=[{"reason": str(r.reason), "leads": _count(r.leads), "share": _pct(r.share)}
                 for r in reasons.itertuples()],
        cohort_rows=cohort_rows, stage_labels=[STAGE_LABELS[s] for s in MAIN_STAGES],
        followup=report.followup,
    )


# --- files ---------------------------------------------------------------------------------------------------


def write_files(report: MonthlyReport, directory: Path, formats: list[str] | tuple[str, ...] = FORMATS
                ) -> dict[str, list[str]]:
    """Write the report in each format under directory/YYYY-MM/ (overwriting the month's files); returns paths."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; expected {', '.join(FORMATS)}")
    folder = Path(directory) / report.month
    folder.mkdir(parents=True, exist_ok=True)
    name = report_name(report.month)
    written: dict[str, list[str]] = {}
    for fmt in formats:
        if fmt == "csv":
            paths = []
            for stem, frame in csv_tables(report).items():
                path = folder / f"{name}-{stem}.csv"
                _write(path, to_csv_text(frame))
                paths.append(str(path))
            written[fmt] = paths
            continue
        text = {"md": to_markdown, "html": to_html, "json": to_json_text}[fmt](report)
        path = folder / f"{name}.{fmt}"
        _write(path, text)
        written[fmt] = [str(path)]
    return written


def _write(path: Path, text: str) -> None:
    # Write next to the target and rename, so a reader never sees half a file.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
