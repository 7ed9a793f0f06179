"""Business policy files: versioned, validated pydantic models kept in `leadflow/config/policies/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

POLICY_DIR = Path(__file__).parent / "policies"


class VersionedPolicy(BaseModel):
    """Base of every policy: strict fields and a version that each judged lead records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=32, description="Recorded on every lead this policy judged.")


P = TypeVar("P", bound=VersionedPolicy)


class PolicyError(ValueError):
    """A policy file that is missing or does not validate."""


def load_policy(model: type[P], name_or_path: str | Path) -> P:
    """Load a policy from `leadflow/config/policies/<name>.json` or from a path, validated against its model."""
    path = Path(name_or_path)
    if not path.suffix:
        path = POLICY_DIR / f"{name_or_path}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise PolicyError(f"policy {path} is invalid: {exc}") from exc
