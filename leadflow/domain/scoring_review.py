"""Scoring review arithmetic: how well scores rank leads against their outcomes (AUC, lift, calibration, bootstrap)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

# The score bands of the review; the same 20-point bands Calculate Lead Score counts (the last one is open).
SCORE_BANDS = ("0-19", "20-39", "40-59", "60-79", "80+")
OUTCOMES = ("converted", "disqualified", "open")


class ReviewError(ValueError):
    """Figures that cannot be computed from the leads given (no outcomes, one class only)."""


# --- ranking quality --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranked:
    """A score's distinct values in ascending order and each lead's position among them (sorted once, reused)."""

    groups: np.ndarray
    size: int


def _ranked(scores: np.ndarray) -> _Ranked:
    _, inverse = np.unique(scores, return_inverse=True)
    return _Ranked(inverse.reshape(-1), int(inverse.max()) + 1 if len(inverse) else 0)


def _weighted_auc(ranked: _Ranked, labels: np.ndarray, weights: np.ndarray) -> float:
    """AUC with each lead counted `weights` times: P(a positive outranks a negative), ties counting half."""
    pos = np.bincount(ranked.groups, weights=weights * labels, minlength=ranked.size)
    neg = np.bincount(ranked.groups, weights=weights * (1 - labels), minlength=ranked.size)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + neg / 2)).sum() / (total_pos * total_neg))


def _labels(outcome: pd.Series | np.ndarray) -> np.ndarray:
    labels = np.asarray(outcome, dtype=float)
    if np.isnan(labels).any() or not np.isin(labels, (0.0, 1.0)).all():
        raise ReviewError("outcomes must be 0 or 1 for every lead")
    return labels


def _scores(score: pd.Series | np.ndarray) -> np.ndarray:
    values = np.asarray(score, dtype=float)
    if np.isnan(values).any():
        raise ReviewError("every lead needs a score (missing scores cannot be ranked)")
    return values


def roc_auc(converted: pd.Series | np.ndarray, score: pd.Series | np.ndarray) -> float:
    """ROC AUC of a score against 0/1 outcomes (ties count half); raises when only one class is present."""
    labels, values = _labels(converted), _scores(score)
    if len(labels) != len(values):
        raise ReviewError("outcomes and scores differ in length")
    auc = _weighted_auc(_ranked(values), labels, np.ones(len(labels)))
    if np.isnan(auc):
        raise ReviewError("AUC needs both converted and not converted leads")
    return auc


@dataclass(frozen=True)
class AucDifference:
    """Challenger AUC minus champion AUC on the same leads, with a paired bootstrap confidence interval."""

    champion: float
    challenger: float
    difference: float
    low: float
    high: float
    level: float
    resamples: int

    @property
    def verdict(self) -> str:
        """Which ranks better, and whether the interval says so beyond chance."""
        if self.low > 0:
            return "challenger ranks better"
        if self.high < 0:
            return "champion ranks better"
        return "no clear difference"


def auc_difference(converted: pd.Series | np.ndarray, champion: pd.Series | np.ndarray,
                   challenger: pd.Series | np.ndarray, *, resamples: int = 200, level: float = 0.95,
                   seed: int = 0) -> AucDifference:
    """Paired bootstrap of the AUC difference: both scores are judged on the same resampled leads (seeded)."""
    labels = _labels(converted)
    first, second = _ranked(_scores(champion)), _ranked(_scores(challenger))
    ones = np.ones(len(labels))
    base_a, base_b = _weighted_auc(first, labels, ones), _weighted_auc(second, labels, ones)
    if np.isnan(base_a):
        raise ReviewError("AUC needs both converted and not converted leads")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        # Resampling n leads with replacement is counting how often each is drawn: one O(n) pass per resample.
        weights = np.bincount(rng.integers(0, len(labels), len(labels)), minlength=len(labels)).astype(float)
        a, b = _weighted_auc(first, labels, weights), _weighted_auc(second, labels, weights)
        if not (np.isnan(a) or np.isnan(b)):
            diffs.append(b - a)
    if not diffs:
        raise ReviewError("no bootstrap resample had both classes")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return AucDifference(base_a, base_b, base_b - base_a, float(low), float(high), level, len(diffs))


# --- lift, bands, calibration --------------------------------------------------------------------------------


def lift_by_group(converted: pd.Series | np.ndarray, score: pd.Series | np.ndarray, groups: int = 10) -> pd.DataFrame:
    """Leads split into `groups` equal parts by descending score (ties keep input order): rate, lift, capture."""
    labels, values = _labels(converted), _scores(score)
    if len(labels) == 0:
        raise ReviewError("lift needs leads")
    if labels.sum() == 0:
        raise ReviewError("lift needs at least one converted lead")
    order = np.argsort(-values, kind="stable")
    group = np.arange(len(labels)) * groups // len(labels) + 1
    frame = pd.DataFrame({"group": group, "converted": labels[order], "score": values[order]})
    table = frame.groupby("group").agg(leads=("converted", "size"), converted=("converted", "sum"),
                                       min_score=("score", "min"), max_score=("score", "max")).reset_index()
    overall = labels.mean()
    table["converted"] = table["converted"].astype(int)
    table["rate"] = table["converted"] / table["leads"]
    table["lift"] = table["rate"] / overall
    table["captured"] = table["converted"].cumsum() / labels.sum()
    return table


def score_band(scores: pd.Series) -> pd.Series:
    """Scores in bands of 20 points (the last band is open), as Calculate Lead Score counts them."""
    edges = [-np.inf, 20, 40, 60, 80, np.inf]
    return pd.cut(scores.astype(float), bins=edges, right=False, labels=list(SCORE_BANDS)).astype("string")


def outcomes_by(leads: pd.DataFrame, by: str) -> pd.DataFrame:
    """Leads, converted and disqualified counts and rates per value of `by`, with lift over the overall rate."""
    if leads.empty:
        return pd.DataFrame(columns=[by, "leads", "converted", "disqualified", "conversion_rate",
                                     "disqualification_rate", "lift"])
    frame = pd.DataFrame({by: leads[by].astype("string").fillna("none"),
                          "converted": (leads["outcome"] == "converted").astype(int),
                          "disqualified": (leads["outcome"] == "disqualified").astype(int)})
    table = frame.groupby(by, sort=True).agg(leads=("converted", "size"), converted=("converted", "sum"),
                                              disqualified=("disqualified", "sum")).reset_index()
    table["conversion_rate"] = table["converted"] / table["leads"]
    table["disqualification_rate"] = table["disqualified"] / table["leads"]
    overall = frame["converted"].mean()
    table["lift"] = table["conversion_rate"] / overall if overall > 0 else np.nan
    return table


def calibration(converted: pd.Series | np.ndarray, probability: pd.Series | np.ndarray,
                bins: int = 10) -> tuple[pd.DataFrame, float, float]:
    """Predicted vs observed conversion in equal-width probability bins, the Brier score and the calibration error."""
    labels, values = _labels(converted), _scores(probability)
    if len(labels) == 0:
        raise ReviewError("calibration needs leads")
    if ((values < 0) | (values > 1)).any():
        raise ReviewError("calibration needs probabilities between 0 and 1")
    which = np.minimum((values * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": which, "predicted": values, "observed": labels})
    table = frame.groupby("bin").agg(leads=("observed", "size"), predicted=("predicted", "mean"),
                                     observed=("observed", "mean")).reset_index()
    table["low"] = table["bin"] / bins
    table["high"] = (table["bin"] + 1) / bins
    brier = float(((values - labels) ** 2).mean())
    ece = float((table["leads"] * (table["predicted"] - table["observed"]).abs()).sum() / len(labels))
    return table[["low", "high", "leads", "predicted", "observed"]], brier, ece


def time_to_outcome(leads: pd.DataFrame) -> pd.DataFrame:
    """Days from scoring to outcome per outcome: leads, median, 90th percentile (leads without a time left out)."""
    rows = []
    for outcome in ("converted", "disqualified"):
        days = leads.loc[leads["outcome"] == outcome, "days_to_outcome"].dropna().astype(float)
        rows.append({"outcome": outcome, "leads": len(days),
                     "median_days": float(days.median()) if len(days) else None,
                     "p90_days": float(days.quantile(0.9)) if len(days) else None})
    return pd.DataFrame(rows)


# --- rules against outcomes -----------------------------------------------------------------------------------

# Explanation part label -> the rule that wrote it (leadflow/domain/scoring.py builds the labels).
_RULE_LABELS = (
    ("industry", re.compile(r"^industry ")),
    ("company size", re.compile(r" employees$")),
    ("country", re.compile(r"^country ")),
    ("seniority", re.compile(r"^(?:c_level|vp|director|manager|individual|entry|unknown)$")),
    ("work email", re.compile(r"^work email$")),
    ("free mail", re.compile(r"^free mail$")),
    ("demo request", re.compile(r"^demo request$")),
    ("pricing visits", re.compile(r" pricing visits?$")),
    ("page views", re.compile(r" page views?$")),
    ("downloads", re.compile(r" downloads?$")),
    ("recency", re.compile(r"^recent$")),
)
_POINTS = re.compile(r"^(.*) \+(\d+(?:\.\d+)?)$")
_HEAD = re.compile(r"^(?:fit|intent) [\d.]+(?: \(capped from [\d.]+\))?: ")


def rule_points(explanations: pd.Series) -> pd.DataFrame:
    """Points each rule gave each lead, read from its score explanation (0 where the rule did not fire)."""
    names = [name for name, _ in _RULE_LABELS] + ["message"]
    # Explanations repeat (one per combination of rule outcomes): each distinct text is parsed once.
    codes, distinct = pd.factorize(explanations.astype(object).where(explanations.notna(), ""))
    rows = []
    for text in distinct.tolist():
        points = dict.fromkeys(names, 0.0)
        for group in str(text).split("; "):
            body = _HEAD.sub("", group, count=1)
            message = body.find("message: ")
            if message >= 0:  # the message part is last and lists its topics with commas of its own
                found = _POINTS.match(body[message:])
                if found:
                    points["message"] += float(found.group(2))
                body = body[:message].rstrip(", ")
            for part in body.split(", ") if body and body != "none" else []:
                found = _POINTS.match(part)
                if not found:
                    continue
                for name, pattern in _RULE_LABELS:
                    if pattern.search(found.group(1)):
                        points[name] += float(found.group(2))
                        break
        rows.append(points)
    table = pd.DataFrame(rows, columns=names, dtype=float).to_numpy().reshape(-1, len(names))
    return pd.DataFrame(table[codes] if len(codes) else np.zeros((0, len(names))), columns=names,
                        index=explanations.index)


def rules_vs_conversion(explanations: pd.Series, converted: pd.Series | np.ndarray) -> pd.DataFrame:
    """Per rule: leads it gave points, their conversion against the others', and its mean points when it fired."""
    labels = _labels(converted)
    points = rule_points(explanations)
    rows = []
    for rule in points.columns:
        fired = points[rule].to_numpy() > 0
        rows.append({
            "rule": rule, "leads_fired": int(fired.sum()),
            "mean_points": float(points[rule].to_numpy()[fired].mean()) if fired.any() else 0.0,
            "rate_fired": float(labels[fired].mean()) if fired.any() else None,
            "rate_not_fired": float(labels[~fired].mean()) if (~fired).any() else None,
        })
    table = pd.DataFrame(rows)
    table["lift"] = table["rate_fired"].astype(float) / table["rate_not_fired"].astype(float).replace(0, np.nan)
    return table
