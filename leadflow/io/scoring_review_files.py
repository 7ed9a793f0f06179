"""The scoring review as a self-contained HTML page (inline SVG charts, no scripts or CDN) and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#dc2626")

_env = Environment(loader=PackageLoader("leadflow", "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True)


def review_name(as_of: str) -> str:
    """The base name of a review's files: one per month (a later review of the same month replaces it)."""
    return f"scoring-review-{as_of[:7]}"


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", fill: str = "#1f2937") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">'
            f"{escape(text)}</text>")


def bar_chart(labels: list[str], series: dict[str, list[float | None]], *, percent: bool = True, width: int = 640,
              height: int = 240) -> Markup:
    """Grouped bars, one group per label and one colour per series (rates as percentages)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not labels or not values:
        return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40">'
                      f"{_text(8, 24, 'No leads with outcomes yet', fill='#64748b')}</svg>")
    left, right, top, bottom = 48, 150, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(values), 1e-9)
    step = plot_w / len(labels)
    bar = step * 0.8 / len(series)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#94a3b8"/>']
    for tick in (0, 0.5, 1):
        y = top + plot_h - tick * plot_h
        label = f"{tick * peak:.0%}" if percent else f"{tick * peak:.2g}"
        parts.append(_text(left - 6, y + 4, label, anchor="end", fill="#64748b"))
    for i, label in enumerate(labels):
        for k, vs in enumerate(series.values()):
            value = vs[i]
            if value is None:
                continue
            h = value / peak * plot_h
            x = left + i * step + step * 0.1 + k * bar
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(label)}: {value:.3f}</title></rect>')
        parts.append(_text(left + i * step + step / 2, top + plot_h + 16, label, anchor="middle"))
    for k, name in enumerate(series):
        y = top + 14 + k * 18
        parts.append(f'<rect x="{width - right + 12}" y="{y - 10}" width="12" height="12" '
                     f'fill="{PALETTE[k % len(PALETTE)]}"/>')
        parts.append(_text(width - right + 30, y, name[:22]))
    parts.append("</svg>")
    return Markup("".join(parts))


def calibration_chart(table: list[dict[str, Any]], width: int = 320, height: int = 320) -> Markup:
    """Observed against predicted conversion per probability bin; the diagonal is perfect calibration."""
    pad = 40
    side = min(width, height) - 2 * pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{pad}" y="{pad}" width="{side}" height="{side}" fill="none" stroke="#94a3b8"/>',
             f'<line x1="{pad}" y1="{pad + side}" x2="{pad + side}" y2="{pad}" stroke="#cbd5e1" '
             'stroke-dasharray="4 4"/>',
             _text(pad + side / 2, height - 8, "predicted", anchor="middle", fill="#64748b"),
             _text(8, pad - 10, "observed", fill="#64748b")]
    for row in table:
        x = pad + float(row["predicted"]) * side
        y = pad + side - float(row["observed"]) * side
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{PALETTE[0]}"><title>{int(row["leads"])} leads: '
                     f'predicted {float(row["predicted"]):.2f}, observed {float(row["observed"]):.2f}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _rates(rows: list[dict[str, Any]], key: str) -> tuple[list[str], dict[str, list[float | None]]]:
    labels = [str(r[key]) for r in rows]
    return labels, {"converted": [r["conversion_rate"] for r in rows],
                    "disqualified": [r["disqualification_rate"] for r in rows]}


def render_html(review: dict[str, Any]) -> str:
    """The review page."""
    charts = []
    for section in review["policies"]:
        lift = section["lift"]
        charts.append({
            "tier": bar_chart(*_rates(section["by_tier"], "tier")),
            "band": bar_chart(*_rates(section["by_band"], "band")),
            "lift": bar_chart([str(r["group"]) for r in lift], {"lift": [r["lift"] for r in lift]}, percent=False),
        })
    comparison = review.get("comparison")
    compare_charts = {}
    if comparison and "lift_champion" in comparison:
        compare_charts["lift"] = bar_chart(
            [str(r["group"]) for r in comparison["lift_champion"]],
            {"champion": [r["lift"] for r in comparison["lift_champion"]],
             "challenger": [r["lift"] for r in comparison["lift_challenger"]]}, percent=False)
        if "calibration" in comparison:
            compare_charts["calibration"] = calibration_chart(comparison["calibration"]["table"])
    template = _env.get_template("scoring_review.html.j2")
    return template.render(review=review, sections=list(zip(review["policies"], charts, strict=True)),
                           comparison=comparison, compare_charts=compare_charts)


def write_review(review: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write `<folder>/scoring-review-<month>.html` and `.json`; returns the paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / review_name(review["as_of"])
    paths = {"html": base.with_suffix(".html"), "json": base.with_suffix(".json")}
    paths["html"].write_text(render_html(review), encoding="utf-8")
    paths["json"].write_text(json.dumps(review, indent=2, default=str), encoding="utf-8")
    return paths


def review_markdown(review: dict[str, Any]) -> str:
    """A short Markdown summary of the review (the artifact and the CLI's text output)."""
    lines = [f"# Scoring review as of {review['as_of'][:10]}", "",
             f"{review['leads_mature']} leads past the {review['maturity_days']}-day maturity period: "
             f"{review['converted']} converted, {review['disqualified']} disqualified.", "",
             "| policy | leads | converted | AUC |", "|---|---|---|---|"]
    for s in review["policies"]:
        auc = f"{s['auc']:.3f}" if s["auc"] is not None else "–"
        lines.append(f"| {s['policy_version']} | {s['leads']} | {s['converted']} | {auc} |")
    comparison = review.get("comparison")
    if comparison:
        lines.append("")
        if "error" in comparison:
            lines.append(f"Champion {comparison['champion']} against challenger {comparison['challenger']}: "
                         f"{comparison['error']}")
        else:
            lo, hi = comparison["ci"]
            lines.append(f"Champion {comparison['champion']} (AUC {comparison['champion_auc']:.3f}) against "
                         f"challenger {comparison['challenger']} (AUC {comparison['challenger_auc']:.3f}) on "
                         f"{comparison['leads']} leads: {comparison['verdict']}, difference "
                         f"{comparison['difference']:+.3f} ({comparison['ci_level']:.0%} CI {lo:+.3f} to {hi:+.3f}).")
    return "\n".join(lines)
