"""`leadflow scoring`: review the scoring policy against outcomes, and train a model that may beat it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

app = typer.Typer(help="Scoring against outcomes: the review and trained conversion models.", no_args_is_help=True)


def _errors() -> tuple[type[BaseException], ...]:
    from deployments.cli import _known_errors
    from leadflow.config.policy import PolicyError
    from leadflow.domain.scoring_model import ModelError
    from leadflow.domain.scoring_review import ReviewError

    return (*_known_errors(), PolicyError, ModelError, ReviewError)


def _fail(message: str) -> None:
    from deployments.cli import _fail as fail

    fail(message)


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} must be an ISO date or time, for example 2026-01-01 or 2026-01-01T00:00:00+00:00")
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("review")
def review(
    policy: Annotated[str | None, typer.Option(help="Review only this policy's version (name or JSON file); it is "
                                               "also the champion against --candidate.")] = None,
    since: Annotated[str | None, typer.Option(help="Only leads first touched since this date (UTC).")] = None,
    candidate: Annotated[str | None, typer.Option(help="A trained model (version or .joblib file) or a policy to "
                                                  "compare with the current policy on the same leads.")] = None,
    config: Annotated[str | None, typer.Option("--config", help="Model configuration (maturity period, feature "
                                               "window): a name in leadflow/config/policies/ or a file.")] = None,
    as_of: Annotated[str | None, typer.Option(help="The review's 'now' (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the review as JSON.")] = False,
) -> None:
    """Conversion by tier and score band, AUC, lift, calibration and time to outcome; champion vs challenger."""
    from deployments.cli import _store
    from flows.scoring_review import scoring_review
    from leadflow.io.scoring_review_files import review_markdown

    since_at, moment = _moment(since, "--since"), _moment(as_of, "--as-of")
    _store()
    try:
        result = scoring_review(policy=policy, since=since_at, candidate=candidate, config=config, as_of=moment)
    except _errors() as exc:
        _fail(str(exc).strip().splitlines()[0])
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(review_markdown(result))
    typer.echo(f"\nPage: {result['files']['html']}")


@app.command("train")
def train(
    policy: Annotated[str | None, typer.Option(help="The rule policy the model must beat (default: the "
                                               "configured one).")] = None,
    config: Annotated[str | None, typer.Option("--config", help="Model configuration: a name in "
                                               "leadflow/config/policies/ or a JSON file.")] = None,
    algorithm: Annotated[str | None, typer.Option(help="logistic_regression (default) or gradient_boosting.")] = None,
    as_of: Annotated[str | None, typer.Option(help="Training's 'now': leads younger than the maturity period "
                                              "before it are left out (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's card as JSON.")] = False,
) -> None:
    """Fit a conversion model on older cohorts, test it on newer ones against the rules, write a model file."""
    from deployments.cli import _store
    from leadflow.steps import scoring_models
    from leadflow.steps.scoring import scoring_policy

    moment = _moment(as_of, "--as-of")
    store = _store()
    try:
        chosen = scoring_policy(policy)
        settings = scoring_models.model_config(config)
        if algorithm:
            settings = type(settings).model_validate({**settings.model_dump(), "algorithm": algorithm})
        path, model = scoring_models.train_model(store, chosen, settings, as_of=moment)
    except (*_errors(), ValueError) as exc:
        _fail(str(exc).strip().splitlines()[0])
    m = model.metrics
    if as_json:
        typer.echo(json.dumps({"file": str(path), "version": model.version, **model.meta,
                               "metrics": {k: v for k, v in m.items() if not isinstance(v, list)} | {
                                   "auc_difference_ci": m["auc_difference_ci"]}}, indent=2, default=str))
        return
    lo, hi = m["auc_difference_ci"]
    typer.echo(f"Trained {model.version} ({model.meta['algorithm']}) on {m['training_leads']} leads "
               f"({model.meta['training_window'][0][:10]} to {model.meta['training_window'][1][:10]}); holdout "
               f"{m['holdout_leads']} newer leads.")
    typer.echo(f"Holdout AUC: model {m['model_auc']:.3f}, policy {chosen.version} rules {m['rule_auc']:.3f} "
               f"(difference {m['auc_difference']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}): {m['verdict']}.")
    if m["model_auc"] > m["rule_auc"]:
        typer.echo(f"To use it beside the rule score, name it in a scoring policy: \"model\": \"{model.version}\".")
    else:
        typer.echo("It does not rank better than the rules: a policy naming it would be refused.")
    typer.echo(f"Model file: {path}")
