"""`leadflow scoring train / review` and hybrid `rescore` on a generated CRM whose outcomes follow known features."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from deployments.cli import app
from leadflow.config.policy import POLICY_DIR
from leadflow.crm.schema import Lead, LeadModelScore
from tests.scoring_crm import build

runner = CliRunner()


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def _policy(folder: Path, name: str, **changes) -> str:
    data = json.loads((POLICY_DIR / "scoring.json").read_text(encoding="utf-8"))
    data.update(changes)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_a_trained_model_beats_the_rules_the_review_says_so_and_hybrid_scores_explain(crm, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_OUTPUT_DIR", str(tmp_path / "out"))
    build(crm, tmp_path, n=400)
    config = json.loads((POLICY_DIR / "scoring_model.json").read_text(encoding="utf-8"))
    config_file = tmp_path / "model.json"
    config_file.write_text(json.dumps({**config, "extra_features": ["budget"]}), encoding="utf-8")

    trained = runner.invoke(app, ["scoring", "train", "--config", str(config_file), "--json"])
    assert trained.exit_code == 0, trained.output
    card = _json(trained.output)
    metrics = card["metrics"]
    assert metrics["model_auc"] > metrics["rule_auc"] + 0.05
    assert metrics["holdout_leads"] == 100 and metrics["training_leads"] == 300
    assert card["training_window"][1] < card["holdout_window"][0]  # older cohorts train, newer ones test
    assert "budget" in card["features"] and card["libraries"]["scikit-learn"]
    assert Path(card["file"]).is_file() and Path(card["file"]).with_suffix(".json").is_file()

    reviewed = runner.invoke(app, ["scoring", "review", "--candidate", card["version"], "--config", str(config_file),
                                   "--json"])
    assert reviewed.exit_code == 0, reviewed.output
    review = _json(reviewed.output)
    comparison = review["comparison"]
    assert comparison["leads"] == 100
    assert comparison["challenger_auc"] == metrics["model_auc"]
    assert comparison["champion_auc"] == metrics["rule_auc"]
    assert comparison["verdict"] == "challenger ranks better" and comparison["ci"][0] > 0
    section = review["policies"][0]
    assert section["leads"] == 400 and section["score_basis"] == "at scoring time"
    assert {r["tier"] for r in section["by_tier"]} and len(section["lift"]) == 10
    page = Path(review["files"]["html"]).read_text(encoding="utf-8")
    assert "challenger ranks better" in page and "<svg" in page
    assert "<script" not in page and "<link" not in page and "https://" not in page

    hybrid = _policy(tmp_path, "hybrid", version="2026.12-hybrid", model=card["version"])
    rescored = runner.invoke(app, ["rescore", "--policy", hybrid, "--json"])
    assert rescored.exit_code == 0, rescored.output
    with crm.engine.connect() as conn:
        leads = conn.execute(select(func.count()).select_from(Lead).where(Lead.is_spam.is_(False))).scalar_one()
        explained = conn.execute(select(func.count()).select_from(Lead).where(
            Lead.score_policy_version == "2026.12-hybrid", Lead.score_explanation.like("fit %"))).scalar_one()
        scores = conn.execute(select(LeadModelScore.model_version, LeadModelScore.probability,
                                     LeadModelScore.top_features)).all()
    assert explained == leads == 400  # the rule score and its explanation stay
    assert len(scores) == leads and {s.model_version for s in scores} == {card["version"]}
    assert all(0 <= s.probability <= 1 for s in scores)
    assert sum(s.top_features is not None for s in scores) > 0.9 * leads
    assert any("budget large +" in (s.top_features or "") for s in scores)

    # Other rules than the model was judged against: refused before anything is scored.
    other = _policy(tmp_path, "other", version="2026.12-other", model=card["version"], high_fit=20)
    refused = runner.invoke(app, ["rescore", "--policy", other])
    assert refused.exit_code == 2
    assert "compared with the rules of policy" in refused.output


def test_training_without_outcomes_fails_in_one_line(sqlite_crm, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_OUTPUT_DIR", str(tmp_path / "out"))
    result = runner.invoke(app, ["scoring", "train"])
    assert result.exit_code == 2
    assert "0 labelled leads past the maturity period" in result.output
