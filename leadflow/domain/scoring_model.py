"""Learning from outcomes: point-in-time features, outcome labels, and a conversion model trained on them.

A lead's features are what was known when it was scored: its submissions up to its cutoff (the earlier of its
first score and its first touch plus the feature window), the company's firmographics, and the intent counters
those submissions carried. Later touches, statuses and notes never enter. Outcomes come from the status history
and count only for leads past the maturity period.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from leadflow.config.policy import VersionedPolicy
from leadflow.domain.normalize import is_free_mail, parse_bool, parse_count
from leadflow.domain.scoring import ScoringPolicy, employee_band, score_leads
from leadflow.domain.scoring_review import auc_difference, calibration, lift_by_group, roc_auc

MODEL_FORMAT = 1
Algorithm = Literal["logistic_regression", "gradient_boosting"]
# Raw-payload fields every model reads (by canonical name), besides the extra ones a model config names.
PAYLOAD_FIELDS = ("job_title", "company_size", "industry", "country", "demo_requested", "page_views",
                  "pricing_page_visits", "content_downloads")
COUNTERS = ("page_views", "pricing_page_visits", "content_downloads")
CATEGORICAL = ("seniority", "size_band", "industry", "country", "source", "email_kind", "revenue_band")
NUMERIC = ("demo_requested", "page_views", "pricing_page_visits", "content_downloads", "submissions",
           "message_words")
LABELS = {"demo_requested": "demo request", "page_views": "page views", "pricing_page_visits": "pricing visits",
          "content_downloads": "downloads", "submissions": "submissions", "message_words": "message length",
          "size_band": "employees", "email_kind": "email", "revenue_band": "revenue"}


class ModelError(ValueError):
    """A model that cannot be trained, loaded or used (too few outcomes, wrong version, not better than rules)."""


class ModelConfig(VersionedPolicy):
    """How `leadflow scoring train` and the scoring review build features, label outcomes and fit a model."""

    algorithm: Algorithm = Field(
        default="logistic_regression",
        description="logistic_regression (explainable default) or gradient_boosting (HistGradientBoosting).")
    maturity_days: int = Field(
        default=90, ge=1, le=3650,
        description="Days after scoring before a lead's outcome counts: younger leads are left out of reviews "
                    "and training, and only outcomes within this many days count.")
    feature_window_hours: float = Field(
        default=24, ge=0, le=24 * 365,
        description="Submissions up to this long after the first touch are known at scoring time (if the lead "
                    "was scored earlier, its score time is the cutoff).")
    holdout_fraction: float = Field(
        default=0.25, gt=0, lt=0.9, description="Newest share of the labelled leads (by cutoff time) held out.")
    extra_features: list[str] = Field(
        default_factory=list, max_length=20,
        description="Raw-payload fields (lower case, separators as '_') that count as features too, e.g. a form's "
                    "own 'budget' field: numbers stay numbers, anything else is a category.")
    categories_kept: int = Field(
        default=20, ge=1, le=200,
        description="Most frequent values kept per categorical feature; rarer ones count as 'other'.")
    min_leads: int = Field(default=200, ge=20, description="Fewest labelled leads a model is trained on.")
    top_features: int = Field(default=3, ge=1, le=10, description="Contributing features named per lead.")
    bootstrap_resamples: int = Field(default=200, ge=20, le=5000,
                                     description="Resamples of the AUC difference's confidence interval.")
    seed: int = Field(default=0, description="Seed of the model fit and the bootstrap.")

    @field_validator("extra_features")
    @classmethod
    def _named_simply(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not n or n != normal_key(n) or n in (*PAYLOAD_FIELDS, *CATEGORICAL, *NUMERIC)]
        if bad:
            raise ValueError(f"extra_features must be new lower-case names with '_' separators, got {bad}")
        return names


def normal_key(name: str) -> str:
    """A payload key as a feature name: lower case, runs of anything but letters and digits as one '_'."""
    return "_".join("".join(c if c.isalnum() else " " for c in str(name).lower()).split())


def rules_digest(policy: ScoringPolicy) -> str:
    """A fingerprint of a policy's rules (not its version or model), so a model is judged against the same rules."""
    rules = policy.model_dump(mode="json", exclude={"version", "model"})
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]


# --- cutoffs and outcomes ----------------------------------------------------------------------------------------


def cutoffs(leads: pd.DataFrame, window_hours: float) -> pd.Series:
    """Each lead's scoring cutoff (lead id -> UTC time): its score time, at most first touch plus the window."""
    latest = leads["first_touch_at"] + pd.Timedelta(hours=window_hours)
    scored = leads["scored_at"]
    at = scored.where(scored.notna() & (scored < latest), latest)
    return pd.Series(pd.to_datetime(at.to_numpy(), utc=True), index=pd.Index(leads["id"].to_numpy(), name="lead_id"),
                     name="cutoff")


def label_outcomes(leads: pd.DataFrame, cutoff: pd.Series, history: pd.DataFrame, as_of: datetime,
                   maturity_days: int) -> pd.DataFrame:
    """Outcome per lead (converted / disqualified / open) within the maturity period, and whether it is mature.

    A conversion wins over a disqualification in the same period (a lead re-opened and won). A lead whose status
    says converted or disqualified without a recorded change (an old import) counts, with an unknown time.
    """
    horizon = pd.Timedelta(days=maturity_days)
    ids = leads["id"].to_numpy()
    at = pd.to_datetime(cutoff.reindex(ids).to_numpy(), utc=True)
    frame = pd.DataFrame({"lead_id": ids, "cutoff": at})
    events = history.merge(frame, on="lead_id")
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)
    events = events.loc[events["occurred_at"] <= events["cutoff"] + horizon]
    first = events.groupby(["lead_id", "status"])["occurred_at"].min()

    def first_at(status: str) -> pd.Series:
        found = first.xs(status, level="status") if status in first.index.get_level_values("status") else None
        times = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        if found is not None:
            times = pd.Series(pd.to_datetime(found.reindex(frame["lead_id"].to_numpy()).to_numpy(), utc=True),
                              index=frame.index)
        return times

    conv, dq = first_at("converted"), first_at("disqualified")
    outcome = np.where(conv.notna(), "converted", np.where(dq.notna(), "disqualified", "open")).astype(object)
    outcome_at = conv.where(conv.notna(), dq)
    status = leads["status"].astype("string").to_numpy(dtype=object, na_value=None)
    untimed = (outcome == "open") & ~frame["lead_id"].isin(history["lead_id"]).to_numpy() & np.isin(
        status, ["converted", "disqualified"])
    outcome[untimed] = status[untimed]
    days = ((outcome_at - frame["cutoff"]).dt.total_seconds() / 86_400).clip(lower=0)
    return pd.DataFrame({
        "lead_id": ids, "cutoff": frame["cutoff"], "outcome": outcome, "outcome_at": outcome_at,
        "days_to_outcome": days, "mature": (frame["cutoff"] + horizon <= pd.Timestamp(as_of)).to_numpy(),
    })


# --- point-in-time features ------------------------------------------------------------------------------------


def _lookup(keys: pd.Series, table: pd.Series) -> pd.Series:
    """`keys.map(table)` that also works when either is empty (pandas cannot map into an empty datetime table)."""
    return pd.Series(table.reindex(keys.to_numpy()).to_numpy(), index=keys.index)


def _joined_messages(subs: pd.DataFrame) -> pd.Series:
    """Every message of each lead joined by newlines (only leads with several are joined in Python)."""
    texts = subs.loc[subs["message"].notna(), ["lead_id", "message"]]
    several = texts["lead_id"].duplicated(keep=False).to_numpy()
    return pd.concat([texts.loc[~several].set_index("lead_id")["message"],
                      texts.loc[several].groupby("lead_id", sort=False)["message"].agg("\n".join)])


def point_in_time(leads: pd.DataFrame, subs: pd.DataFrame, cutoff: pd.Series,
                  extra: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """The leads as known at their cutoffs: scoring's input columns built from their early submissions only.

    `subs` are the submissions up to each lead's cutoff (leadflow/crm/scoring_data.py never reads later ones);
    this filters once more so that no caller can pass a later touch in.
    """
    ids = leads["id"].to_numpy()
    subs = subs.loc[(subs["submitted_at"] <= _lookup(subs["lead_id"], cutoff)).to_numpy(dtype=bool)]
    subs = subs.sort_values(["lead_id", "submitted_at"], kind="stable")
    groups = subs.groupby("lead_id", sort=False)
    text = {name: groups[name].first() for name in ("job_title", "company_size", "industry", "country", "source",
                                                    *extra) if name in subs.columns}
    counts = {name: parse_count(subs[name]).groupby(subs["lead_id"]).max() for name in COUNTERS if name in subs}
    demo = (parse_bool(subs["demo_requested"].astype("string")).fillna(False).astype(bool)
            .groupby(subs["lead_id"]).any() if "demo_requested" in subs else pd.Series(dtype=bool))
    lead_ids = pd.Series(ids)
    frame = pd.DataFrame({
        "id": ids,
        "email_domain": leads["email_domain"].to_numpy(),
        "employee_count": leads["employee_count"].to_numpy(),
        "revenue_band": leads["revenue_band"].to_numpy(),
        "submissions": _lookup(lead_ids, groups.size()).fillna(0).astype("int64").to_numpy(),
        "last_touch_at": pd.to_datetime(_lookup(lead_ids, groups["submitted_at"].max()), utc=True).to_numpy(),
        "cutoff": cutoff.reindex(ids).to_numpy(),
        "message": _lookup(lead_ids, _joined_messages(subs)).astype("string").to_numpy(),
        "demo_requested": _lookup(lead_ids, demo).fillna(False).astype(bool).to_numpy(),
    })
    for name in COUNTERS:
        values = _lookup(lead_ids, counts[name]) if name in counts else pd.Series(np.nan, index=lead_ids.index)
        frame[name] = pd.to_numeric(values, errors="coerce").astype("Int64").to_numpy()
    for name, values in text.items():
        frame[name] = _lookup(lead_ids, values).astype("string").to_numpy()
    # Form fields first, then the company's firmographics: an industry or country typed later is not used.
    for name in ("industry", "country"):
        typed = frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype="string")
        frame[name] = typed.fillna(pd.Series(leads[name].to_numpy(), index=frame.index).astype("string"))
    for name in ("job_title", "company_size", "source", *extra):
        if name not in frame:
            frame[name] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["source"] = frame["source"].fillna("unknown")
    return frame


def rule_scores(features: pd.DataFrame, policy: ScoringPolicy) -> pd.DataFrame:
    """The policy's rule score of each lead as it would have been at its own cutoff (recency measured from it)."""
    if features.empty:
        return score_leads(features.assign(last_touch_at=pd.Series(dtype="datetime64[ns, UTC]")), policy,
                           pd.Timestamp("2000-01-01", tz="UTC"))
    # One as_of for the batch: each lead's last touch moves so that its age at as_of is its age at its cutoff.
    as_of = pd.Timestamp(features["cutoff"].max())
    age = pd.to_datetime(features["cutoff"], utc=True) - pd.to_datetime(features["last_touch_at"], utc=True)
    return score_leads(features.assign(last_touch_at=as_of - age), policy, as_of)


# --- the model matrix --------------------------------------------------------------------------------------


@dataclass
class FeatureSpec:
    """Which features a model reads and the categories it knows, learned from its training leads."""

    categorical: list[str]
    numeric: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Matrix columns in order: categorical codes first, then numbers."""
        return [*self.categorical, *self.numeric]


def _raw_features(features: pd.DataFrame, scored: pd.DataFrame, extra: list[str] | tuple[str, ...],
                  spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Feature values per lead before encoding: categories as lower-case text, counts as numbers.

    An extra field is a number when nearly all its values are (decided on the training leads, then kept).
    """
    size = employee_band(features["employee_count"])
    size = size.where(size != "unknown", employee_band(features["company_size"]))
    domain = features["email_domain"].astype("string")
    kind = np.where(domain.isna(), "none", np.where(is_free_mail(domain).fillna(False).astype(bool), "free", "work"))
    out = pd.DataFrame({
        "seniority": scored["seniority"].astype("string").to_numpy(),
        "size_band": size.to_numpy(),
        "industry": features["industry"].astype("string").str.strip().str.lower().to_numpy(),
        "country": features["country"].astype("string").str.strip().str.upper().to_numpy(),
        "source": features["source"].astype("string").to_numpy(),
        "email_kind": kind,
        "revenue_band": features["revenue_band"].astype("string").to_numpy(),
        "demo_requested": features["demo_requested"].astype(float).to_numpy(),
        "submissions": np.log1p(features["submissions"].astype(float).to_numpy()),
        "message_words": np.log1p(features["message"].astype("string").str.count(" ").fillna(-1).add(1)
                                  .astype(float).to_numpy()),
    }, index=features.index)
    for name in COUNTERS:
        out[name] = np.log1p(pd.to_numeric(features[name], errors="coerce").astype(float).fillna(0).to_numpy())
    for name in extra:
        values = features[name].astype("string")
        numbers = pd.to_numeric(values, errors="coerce")
        numeric = (name in spec.numeric) if spec is not None else (
            numbers.notna().sum() >= 0.95 * values.notna().sum() > 0)
        out[name] = numbers.astype(float).to_numpy() if numeric else values.str.strip().str.lower().to_numpy()
    return out


def learn_spec(raw: pd.DataFrame, extra: list[str] | tuple[str, ...], kept: int) -> FeatureSpec:
    """The categories (most frequent `kept`) and baselines of the training leads."""
    categorical = [*CATEGORICAL, *(n for n in extra if raw[n].dtype == object or isinstance(raw[n].dtype,
                                                                                              pd.StringDtype))]
    numeric = [*NUMERIC, *(n for n in extra if n not in categorical)]
    spec = FeatureSpec(categorical, numeric)
    for name in categorical:
        counts = raw[name].astype("string").fillna("none").value_counts()
        spec.categories[name] = sorted(counts.index[:kept].tolist())
        spec.baseline[name] = float(spec.categories[name].index(counts.index[0]))
    for name in numeric:
        spec.baseline[name] = float(np.nanmedian(raw[name].astype(float))) if raw[name].notna().any() else 0.0
    return spec


def encode(raw: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The model matrix: category codes (unknown and rare values share the last code) and numbers (NaN -> 0)."""
    matrix = np.empty((len(raw), len(spec.columns)), dtype=np.float32)
    for j, name in enumerate(spec.categorical):
        known = spec.categories[name]
        codes = pd.Categorical(raw[name].astype("string").fillna("none"), categories=known).codes
        matrix[:, j] = np.where(codes < 0, len(known), codes)
    for j, name in enumerate(spec.numeric, start=len(spec.categorical)):
        matrix[:, j] = np.nan_to_num(raw[name].astype(float).to_numpy(), nan=0.0)
    return matrix


def _estimator(spec: FeatureSpec, algorithm: Algorithm, seed: int) -> Any:
    """A scikit-learn pipeline over the model matrix (imported here: the library costs a second to import)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    n_cat = len(spec.categorical)
    if algorithm == "gradient_boosting":
        mask = [True] * n_cat + [False] * len(spec.numeric)
        return HistGradientBoostingClassifier(categorical_features=mask, max_iter=200, learning_rate=0.1,
                                              early_stopping=True, random_state=seed)
    columns = ColumnTransformer([
        ("categories", OneHotEncoder(categories=[list(range(len(spec.categories[n]) + 1)) for n in spec.categorical],
                                     handle_unknown="ignore"), list(range(n_cat))),
        ("numbers", StandardScaler(), list(range(n_cat, len(spec.columns)))),
    ])
    return make_pipeline(columns, LogisticRegression(max_iter=500, C=1.0))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def contributions(estimator: Any, spec: FeatureSpec, matrix: np.ndarray) -> np.ndarray:
    """Log-odds each feature adds to each lead's prediction against the training baseline (leads x features).

    Logistic regression: exact per feature (its coefficients times the lead's values minus the baseline's).
    Gradient boosting: the change when the feature alone is set to its baseline value.
    """
    baseline = np.asarray([spec.baseline[n] for n in spec.columns], dtype=np.float32)
    if hasattr(estimator, "steps"):
        transform, model = estimator[:-1], estimator[-1]
        coef = model.coef_.ravel()
        lead_terms = transform.transform(matrix)
        base_terms = transform.transform(baseline[None, :])
        sizes = [len(spec.categories[n]) + 1 for n in spec.categorical] + [1] * len(spec.numeric)
        owner = np.repeat(np.arange(len(sizes)), sizes)
        from scipy import sparse

        groups = sparse.csr_matrix((np.ones(len(owner)), (np.arange(len(owner)), owner)))
        weighted = sparse.csr_matrix(lead_terms).multiply(coef) @ groups
        base = sparse.csr_matrix(base_terms).multiply(coef) @ groups
        return np.asarray(weighted.todense()) - np.asarray(base.todense())
    full = _logit(estimator.predict_proba(matrix)[:, 1])
    out = np.empty((len(matrix), len(spec.columns)))
    for j in range(len(spec.columns)):
        moved = matrix.copy()
        moved[:, j] = baseline[j]
        out[:, j] = full - _logit(estimator.predict_proba(moved)[:, 1])
    return out


def describe_top(contrib: np.ndarray, raw: pd.DataFrame, spec: FeatureSpec, top: int) -> list[str | None]:
    """'demo request +1.2, industry software +0.4' per lead: the features that raised its probability most.

    Only known categories are named (values seen often in training), never a rare value that could identify
    someone; counts are named by feature only.
    """
    names = spec.columns
    labels = []
    for name in names:
        label = LABELS.get(name, name.replace("_", " "))
        if name in spec.categorical:
            values = raw[name].astype("string").fillna("none")
            known = values.isin(spec.categories[name])
            labels.append((label + " " + values.where(known, "other")).to_numpy(dtype=object))
        else:
            labels.append(np.full(len(raw), label, dtype=object))
    order = np.argsort(-contrib, axis=1)[:, :top]
    out: list[str | None] = []
    for i, row in enumerate(order):
        parts = [f"{labels[j][i]} +{contrib[i, j]:.2f}" for j in row if contrib[i, j] >= 0.005]
        out.append(", ".join(parts) or None)
    return out


# --- training ------------------------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted model with what it needs to be judged and used: spec, metrics, windows and library versions."""

    version: str
    config: dict[str, Any]
    spec: FeatureSpec
    estimator: Any
    metrics: dict[str, Any]
    meta: dict[str, Any]

    def predict(self, features: pd.DataFrame, scored: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        """Conversion probability and top contributing features of each lead."""
        if features.empty:
            return np.empty(0), []
        raw = _raw_features(features, scored, self.config.get("extra_features", []), self.spec)
        matrix = encode(raw, self.spec)
        probability = self.estimator.predict_proba(matrix)[:, 1]
        top = describe_top(contributions(self.estimator, self.spec, matrix), raw, self.spec,
                           int(self.config.get("top_features", 3)))
        return probability, top

    def to_file_parts(self) -> tuple[dict[str, Any], bytes]:
        """Plain metadata (readable without unpickling) and the pickled estimator and spec."""
        meta = {"format": MODEL_FORMAT, "kind": "leadflow-scoring-model", "version": self.version,
                "config": self.config, "metrics": self.metrics, **self.meta}
        return meta, pickle.dumps({"estimator": self.estimator, "spec": self.spec})


def holdout_split(cutoff: pd.Series, fraction: float) -> tuple[np.ndarray, pd.Timestamp]:
    """Which leads are held out (the newest `fraction` by cutoff, whole instants together) and where it starts."""
    ordered = np.sort(cutoff.to_numpy())
    start = pd.Timestamp(ordered[min(int(len(ordered) * (1 - fraction)), len(ordered) - 1)])
    return (cutoff >= start).to_numpy(), start


def train(features: pd.DataFrame, converted: np.ndarray, policy: ScoringPolicy, config: ModelConfig,
          libraries: dict[str, str], now: datetime | None = None) -> TrainedModel:
    """Fit a model on older cohorts and judge it against the rule policy on the newer holdout (same leads)."""
    converted = np.asarray(converted, dtype=int)
    if len(features) < config.min_leads:
        raise ModelError(f"{len(features)} labelled leads past the maturity period; training needs at least "
                         f"{config.min_leads}")
    held, start = holdout_split(pd.Series(features["cutoff"].to_numpy()), config.holdout_fraction)
    for name, part in (("training", ~held), ("holdout", held)):
        classes = set(np.unique(converted[part]).tolist())
        if classes != {0, 1}:
            raise ModelError(f"the {name} leads need both converted and not converted leads (found "
                             f"{sorted(classes) or 'none'})")
    scored = rule_scores(features, policy)
    extra = list(config.extra_features)
    raw = _raw_features(features, scored, extra)
    spec = learn_spec(raw.loc[~held], extra, config.categories_kept)
    matrix = encode(raw, spec)
    estimator = _estimator(spec, config.algorithm, config.seed)
    estimator.fit(matrix[~held], converted[~held])
    probability = estimator.predict_proba(matrix[held])[:, 1]
    y_test = converted[held]
    rules = scored["score"].to_numpy(dtype=float)[held]
    compared = auc_difference(y_test, rules, probability, resamples=config.bootstrap_resamples, seed=config.seed)
    table, brier, ece = calibration(y_test, probability)
    train_at = features["cutoff"].to_numpy()[~held]
    now = now or datetime.now(UTC)
    version = f"{config.version}-{config.algorithm[:2]}-{now:%Y%m%dT%H%M%S}"
    metrics = {
        "model_auc": compared.challenger, "rule_auc": compared.champion, "auc_difference": compared.difference,
        "auc_difference_ci": [compared.low, compared.high], "ci_level": compared.level, "verdict": compared.verdict,
        "train_auc": roc_auc(converted[~held], estimator.predict_proba(matrix[~held])[:, 1]),
        "brier": brier, "calibration_error": ece, "calibration": table.to_dict("records"),
        "lift": lift_by_group(y_test, probability).to_dict("records"),
        "rule_lift": lift_by_group(y_test, rules).to_dict("records"),
        "training_leads": int((~held).sum()), "training_converted": int(converted[~held].sum()),
        "holdout_leads": int(held.sum()), "holdout_converted": int(y_test.sum()),
    }
    meta = {
        "created_at": now.isoformat(), "algorithm": config.algorithm, "features": spec.columns,
        "training_window": [pd.Timestamp(train_at.min()).isoformat(), pd.Timestamp(train_at.max()).isoformat()],
        "holdout_window": [start.isoformat(), pd.Timestamp(features["cutoff"].max()).isoformat()],
        "rule_policy": {"version": policy.version, "rules_digest": rules_digest(policy)},
        "libraries": libraries,
    }
    return TrainedModel(version, config.model_dump(mode="json"), spec, estimator, metrics, meta)


def check_hybrid(model_meta: dict[str, Any], policy: ScoringPolicy) -> None:
    """Refuse a model that was not judged against this policy's rules or did not beat them on its holdout."""
    judged = model_meta.get("rule_policy", {})
    if judged.get("rules_digest") != rules_digest(policy):
        raise ModelError(f"model {model_meta.get('version')} was compared with the rules of policy "
                         f"{judged.get('version')}, not with those of policy {policy.version}: train it again "
                         "with this policy")
    metrics = model_meta.get("metrics", {})
    model_auc, rule_auc = metrics.get("model_auc"), metrics.get("rule_auc")
    if model_auc is None or rule_auc is None or not model_auc > rule_auc:
        raise ModelError(f"model {model_meta.get('version')} does not rank better than policy {policy.version}'s "
                         f"rules on its holdout (AUC {model_auc} vs {rule_auc}): not used")
