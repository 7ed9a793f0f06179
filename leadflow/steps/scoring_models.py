"""Scoring review and models: read labelled leads as they were at scoring time, train, review, and hybrid scoring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadflow.config.policy import load_policy
from leadflow.config.settings import get_settings
from leadflow.crm import scoring_data
from leadflow.crm.store import Store
from leadflow.domain import scoring_model as sm
from leadflow.domain import scoring_review as rv
from leadflow.domain.scoring import ScoringPolicy
from leadflow.io import model_files

MODEL_CONFIG = "scoring_model"


def model_config(name_or_path: str | None = None) -> sm.ModelConfig:
    """The model configuration (features, maturity, holdout, algorithm) from a policy file."""
    return load_policy(sm.ModelConfig, name_or_path or MODEL_CONFIG)


def models_dir() -> Path:
    """Where trained models of this CRM live: `<output_dir>/<crm_name>/models`."""
    return get_settings().crm_dir() / "models"


@dataclass
class Labelled:
    """Leads with their stored scores, their point-in-time features and their outcomes (all in one order)."""

    leads: pd.DataFrame
    features: pd.DataFrame
    outcomes: pd.DataFrame

    def subset(self, mask: np.ndarray) -> Labelled:
        """These rows only."""
        return Labelled(*(f.loc[mask].reset_index(drop=True) for f in (self.leads, self.features, self.outcomes)))

    @property
    def converted(self) -> np.ndarray:
        """1 for a converted lead, else 0."""
        return (self.outcomes["outcome"] == "converted").to_numpy(dtype=int)


def features_as_of(store: Store, leads: pd.DataFrame, cutoff: pd.Series, extra: list[str]) -> pd.DataFrame:
    """The leads' point-in-time features from their submissions up to `cutoff` (lead id -> time)."""
    subs = scoring_data.early_submissions(store, cutoff, [*sm.PAYLOAD_FIELDS, *extra])
    return sm.point_in_time(leads, subs, cutoff, extra)


def load_labelled(store: Store, config: sm.ModelConfig, as_of: datetime, since: datetime | None = None,
                  extra: list[str] | None = None) -> Labelled:
    """Every non-spam lead past the maturity period, with features known at its cutoff and its outcome.

    `extra` names raw-payload fields read besides the configuration's (the ones a model under review reads).
    """
    leads = scoring_data.review_leads(store, since=since)
    cutoff = sm.cutoffs(leads, config.feature_window_hours)
    outcomes = sm.label_outcomes(leads, cutoff, scoring_data.status_history(store), as_of, config.maturity_days)
    mature = outcomes["mature"].to_numpy(dtype=bool)
    leads, outcomes, cutoff = leads.loc[mature], outcomes.loc[mature], cutoff.loc[mature]
    features = features_as_of(store, leads, cutoff, list(dict.fromkeys([*config.extra_features, *(extra or [])])))
    return Labelled(leads.reset_index(drop=True), features.reset_index(drop=True), outcomes.reset_index(drop=True))


def train_model(store: Store, policy: ScoringPolicy, config: sm.ModelConfig, *, as_of: datetime | None = None,
                folder: Path | None = None) -> tuple[Path, sm.TrainedModel]:
    """Train on older cohorts, judge against the policy's rules on the newer holdout, and write the model file."""
    now = as_of or datetime.now(UTC)
    data = load_labelled(store, config, now)
    model = sm.train(data.features, data.converted, policy, config, model_files.library_versions(), now=now)
    return model_files.save_model(model, folder or models_dir()), model


# --- hybrid scoring --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _checked_model(path: str, modified_ns: int, policy_json: str) -> sm.TrainedModel:
    """A model file read and checked once per process (and again when the file or the policy changes)."""
    sm.check_hybrid(model_files.read_meta(Path(path)), ScoringPolicy.model_validate_json(policy_json))
    return model_files.load_model(Path(path))


def hybrid_model(policy: ScoringPolicy) -> sm.TrainedModel | None:
    """The model a policy names, checked (same rules, better holdout AUC), or None when it names none."""
    if policy.model is None:
        return None
    path = model_files.resolve_model(policy.model, models_dir())
    return _checked_model(str(path), path.stat().st_mtime_ns, policy.model_dump_json())


def model_scores(store: Store, model: sm.TrainedModel, lead_ids: list[int], as_of: datetime,
                 policy: ScoringPolicy) -> pd.DataFrame:
    """Probability, top features and model version of these leads, from what is known about them at `as_of`."""
    leads = scoring_data.review_leads(store, lead_ids=lead_ids)
    cutoff = pd.Series(pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo
                       else pd.Timestamp(as_of, tz="UTC"), index=pd.Index(leads["id"].to_numpy()))
    features = features_as_of(store, leads, cutoff, list(model.config.get("extra_features", [])))
    probability, top = model.predict(features, sm.rule_scores(features, policy))
    return pd.DataFrame({"lead_id": leads["id"].to_numpy(), "model_version": model.version,
                         "probability": probability.astype(float), "top_features": top, "scored_at": as_of})


def store_model_scores(store: Store, scores: pd.DataFrame) -> None:
    """Replace these leads' model scores in one transaction."""
    with store.begin() as conn:
        scoring_data.write_model_scores(store, conn, scores)


# --- review ----------------------------------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in out.to_dict("records")]


def _auc_or_none(y: np.ndarray, score: np.ndarray) -> float | None:
    try:
        return rv.roc_auc(y, score)
    except rv.ReviewError:
        return None


def policy_section(data: Labelled, version: str, policy: ScoringPolicy | None = None) -> dict[str, Any]:
    """The figures of one policy version in use: outcomes by tier and band, AUC, lift, time to outcome, rules.

    With the version's policy at hand, its leads are scored again as they were at their cutoffs; else their
    stored scores count, which a later touch may have raised (the section says which).
    """
    mask = ((data.leads["score_policy_version"] == version).fillna(False).to_numpy(dtype=bool)
            & data.leads["score"].notna().to_numpy())
    part = data.subset(mask)
    y = part.converted
    if policy is not None:
        scored = sm.rule_scores(part.features, policy)
        stored = pd.DataFrame({"score": scored["score"].to_numpy(), "tier": scored["tier"].to_numpy(),
                               "score_explanation": scored["explanation"].to_numpy()})
    else:
        stored = part.leads
    score = stored["score"].astype(float).to_numpy()
    frame = pd.DataFrame({"tier": stored["tier"].to_numpy(), "band": rv.score_band(stored["score"]).to_numpy(),
                          "outcome": part.outcomes["outcome"], "days_to_outcome": part.outcomes["days_to_outcome"]})
    part.leads["score_explanation"] = stored["score_explanation"].to_numpy()
    section: dict[str, Any] = {
        "policy_version": version, "score_basis": "at scoring time" if policy is not None else "as stored",
        "leads": len(part.leads), "converted": int(y.sum()),
        "disqualified": int((frame["outcome"] == "disqualified").sum()),
        "auc": _auc_or_none(y, score),
        "by_tier": _records(rv.outcomes_by(frame, "tier")),
        "by_band": _records(rv.outcomes_by(frame, "band")),
        "time_to_outcome": _records(rv.time_to_outcome(frame)),
        "rules": _records(rv.rules_vs_conversion(part.leads["score_explanation"], y)) if len(y) else [],
        "lift": [],
    }
    if y.sum() > 0:
        section["lift"] = _records(rv.lift_by_group(y, score))
    return section


@dataclass
class Contender:
    """A policy's rules or a trained model, as one side of a champion/challenger comparison."""

    name: str
    policy: ScoringPolicy | None = None
    model: sm.TrainedModel | None = None

    def scores(self, features: pd.DataFrame, rules_policy: ScoringPolicy) -> np.ndarray:
        """This side's score of each lead at its cutoff (a model's probability, or the rule score)."""
        if self.model is not None:
            probability, _ = self.model.predict(features, sm.rule_scores(features, rules_policy))
            return probability
        return sm.rule_scores(features, self.policy).loc[:, "score"].to_numpy(dtype=float)

    @property
    def holdout_start(self) -> pd.Timestamp | None:
        """Where a model's holdout starts (it was fit on the leads before); None for rules."""
        return pd.Timestamp(self.model.meta["holdout_window"][0]) if self.model is not None else None


def contender(name_or_path: str, policy_loader: Any = None) -> Contender:
    """A model (a .joblib path or a model version in the models folder) or a scoring policy (name or .json)."""
    path = Path(name_or_path)
    if path.suffix == model_files.SUFFIX or (models_dir() / f"{name_or_path}{model_files.SUFFIX}").is_file():
        model = model_files.load_model(model_files.resolve_model(name_or_path, models_dir()))
        return Contender(f"model {model.version}", model=model)
    policy = (policy_loader or (lambda n: load_policy(ScoringPolicy, n)))(name_or_path)
    if policy.model is not None:
        model = model_files.load_model(model_files.resolve_model(policy.model, models_dir()))
        return Contender(f"policy {policy.version} with model {model.version}", policy=policy, model=model)
    return Contender(f"policy {policy.version}", policy=policy)


def compare(data: Labelled, champion: Contender, challenger: Contender, rules_policy: ScoringPolicy,
            config: sm.ModelConfig) -> dict[str, Any]:
    """Champion against challenger on the same leads (a model's holdout when either is a model), with a CI."""
    starts = [s for s in (champion.holdout_start, challenger.holdout_start) if s is not None]
    mask = np.ones(len(data.leads), dtype=bool)
    if starts:
        mask = (data.outcomes["cutoff"] >= max(starts)).to_numpy(dtype=bool)
    part = data.subset(mask)
    y = part.converted
    out: dict[str, Any] = {"champion": champion.name, "challenger": challenger.name, "leads": len(y),
                           "converted": int(y.sum()),
                           "holdout_start": max(starts).isoformat() if starts else None}
    try:
        a, b = champion.scores(part.features, rules_policy), challenger.scores(part.features, rules_policy)
        diff = rv.auc_difference(y, a, b, resamples=config.bootstrap_resamples, seed=config.seed)
    except rv.ReviewError as exc:
        return {**out, "error": str(exc)}
    out.update({"champion_auc": diff.champion, "challenger_auc": diff.challenger, "difference": diff.difference,
                "ci": [diff.low, diff.high], "ci_level": diff.level, "verdict": diff.verdict,
                "lift_champion": _records(rv.lift_by_group(y, a)), "lift_challenger": _records(rv.lift_by_group(y, b))})
    model_side = b if challenger.model is not None else (a if champion.model is not None else None)
    if model_side is not None:
        table, brier, ece = rv.calibration(y, model_side)
        out["calibration"] = {"table": _records(table), "brier": brier, "calibration_error": ece}
    return out


def scoring_review(store: Store, policy: ScoringPolicy, config: sm.ModelConfig, *, as_of: datetime | None = None,
                   since: datetime | None = None, only_policy: bool = False, champion: Contender | None = None,
                   challenger: Contender | None = None) -> dict[str, Any]:
    """The review: per policy version in use, outcomes and ranking figures; and champion against challenger."""
    now = as_of or datetime.now(UTC)
    extra = [name for side in (champion, challenger) if side is not None and side.model is not None
             for name in side.model.config.get("extra_features", [])]
    data = load_labelled(store, config, now, since=since, extra=extra)
    known = {p.version: p for p in (policy, champion and champion.policy, challenger and challenger.policy) if p}
    versions = sorted(v for v in data.leads["score_policy_version"].dropna().unique().tolist())
    if only_policy:
        versions = [v for v in versions if v == policy.version]
    review: dict[str, Any] = {
        "as_of": now.isoformat(), "since": since.isoformat() if since else None,
        "maturity_days": config.maturity_days, "feature_window_hours": config.feature_window_hours,
        "policy": policy.version, "leads_mature": len(data.leads),
        "converted": int(data.converted.sum()),
        "disqualified": int((data.outcomes["outcome"] == "disqualified").sum()),
        "policies": [policy_section(data, v, known.get(v)) for v in versions],
        "comparison": None,
    }
    if challenger is not None:
        review["comparison"] = compare(data, champion or Contender(f"policy {policy.version}", policy=policy),
                                       challenger, policy, config)
    return review
