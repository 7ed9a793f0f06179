"""Export profiles: what real CRMs' and tools' exports look like, kept as data in `leadflow/config/profiles/`.

One JSON file per source, validated by `ExportProfile` on load: the headers the tool writes (onto canonical
columns), the headers that identify its exports, its date formats, its own status vocabulary and channel picklist,
and the documentation the headers were taken from.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROFILE_DIR = Path(__file__).parent / "profiles"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ProfileError(ValueError):
    """An export profile that is missing or does not validate."""


class ExportProfile(BaseModel):
    """How one source's exports look and what their values mean."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Profile id, the file's stem; what `--profile` takes.")
    title: str = Field(min_length=1, description="The tool and export, for people.")
    documentation: list[str] = Field(min_length=1, description="Where the headers were learned (URLs).")
    exports: list[str] = Field(default_factory=list, description="The exports covered (objects, reports, forms).")
    aliases: dict[str, str] = Field(
        min_length=1, description="Header as the tool writes it -> canonical column (see domain/contract.py).")
    distinctive: list[str] = Field(
        min_length=2, description="Headers that identify this tool's exports; detection counts how many a file has.")
    ignored: list[str] = Field(
        default_factory=list, description="Headers that must not be taken for a canonical column by a generic alias.")
    min_matches: int = Field(default=2, ge=1, description="Distinctive headers a file needs to be recognised.")
    date_formats: list[str] = Field(
        default_factory=list, description="strptime formats of the tool's date columns, most common first.")
    day_first: bool | None = Field(default=None, description="Day before month in the tool's own dates, if fixed.")
    status_vocabulary: dict[str, list[str]] = Field(
        default_factory=dict, description="Canonical state column -> the tool's own values (lead_status, ...).")
    channel_picklist: list[str] = Field(default_factory=list, description="The tool's own lead-source values.")
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="Canonical column -> further headers whose value a row uses when the "
                                          "mapped header's is empty (Mailchimp: OPTIN_TIME, else CONFIRM_TIME).")
    default_source: str | None = Field(
        default=None, description="Channel of this tool's rows that name none (an event app's rows are `event`), "
                                  "unless `--source-name` says otherwise.")
    notes: str = ""

    @field_validator("documentation")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        bad = [url for url in value if not url.startswith("https://")]
        if bad:
            raise ValueError(f"documentation must be https URLs: {bad}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExportProfile:
        if not _NAME.match(self.name):
            raise ValueError(f"profile name {self.name!r} must be snake case")
        bad = sorted({t for t in self.aliases.values() if not _NAME.match(t)})
        if bad:
            raise ValueError(f"alias targets must be canonical column names: {bad}")
        if len(set(self.distinctive)) < self.min_matches:
            raise ValueError("fewer distinctive headers than min_matches")
        return self


def load_profile_file(path: str | Path) -> ExportProfile:
    """Read and validate one profile file; its name must be the file's stem."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read export profile {file}: {exc}") from exc
    try:
        profile = ExportProfile.model_validate(data)
    except ValueError as exc:
        raise ProfileError(f"export profile {file} is invalid: {exc}".splitlines()[0]) from exc
    if profile.name != file.stem:
        raise ProfileError(f"export profile {file}: name {profile.name!r} differs from the file name")
    return profile


@cache
def export_profiles(folder: str | None = None) -> tuple[ExportProfile, ...]:
    """Every export profile shipped in `leadflow/config/profiles/` (or `folder`), sorted by name."""
    root = Path(folder) if folder else PROFILE_DIR
    return tuple(load_profile_file(path) for path in sorted(root.glob("*.json")))


def profile_names() -> list[str]:
    """The names `--profile` accepts."""
    return [p.name for p in export_profiles()]
