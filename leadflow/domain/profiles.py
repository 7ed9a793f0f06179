"""Which tool wrote an export, recognised from its headers by the export profiles (leadflow/config/profiles/)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from leadflow.config.profiles import ExportProfile, ProfileError, export_profiles
from leadflow.domain.contract import CANONICAL_COLUMNS, fold_header

GENERIC = "generic"


@dataclass(frozen=True)
class ProfileMatch:
    """The profile chosen for a file (None: the generic aliases alone) and the distinctive headers it matched."""

    profile: ExportProfile | None
    matched: tuple[str, ...] = ()
    forced: bool = False

    @property
    def name(self) -> str:
        """The profile's name, or `generic`."""
        return self.profile.name if self.profile else GENERIC

    @property
    def aliases(self) -> dict[str, str]:
        """The profile's header spellings (none for generic)."""
        return dict(self.profile.aliases) if self.profile else {}

    @property
    def fallbacks(self) -> dict[str, list[str]]:
        """Canonical column -> headers tried in turn when the mapped one is empty (none for generic)."""
        return {k: list(v) for k, v in self.profile.fallbacks.items()} if self.profile else {}

    @property
    def ignored(self) -> list[str]:
        """Headers the profile keeps out of generic matching."""
        return list(self.profile.ignored) if self.profile else []


def with_fallbacks(mapping: dict[str, str], headers: Sequence[str],
                   fallbacks: dict[str, list[str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A mapping whose columns with fallback headers in the file read a coalesced field instead, and those fields.

    The coalesced field (`<column>_coalesced`: the mapped header's value, else the first non-empty fallback) is
    added to each raw chunk by `coalesce`, so the raw payload keeps every original field as it was.
    """
    by_fold = {fold_header(h): h for h in headers}
    out, fields = dict(mapping), {}
    for column, extra in fallbacks.items():
        primary = next((h for h, c in mapping.items() if c == column), None)
        present = [by_fold[fold_header(h)] for h in extra if fold_header(h) in by_fold]
        present = [h for h in present if h != primary]
        if primary is None or not present:
            continue
        field = f"{column}_coalesced"
        del out[primary]
        out[field] = column
        fields[field] = [primary, *present]
    return out, fields


def coalesce(raw: pd.DataFrame, fields: dict[str, list[str]]) -> pd.DataFrame:
    """A raw chunk with each coalesced field added: per row, the first of its headers with a value."""
    if not fields:
        return raw
    added = {}
    for field, headers in fields.items():
        value = pd.Series(pd.NA, index=raw.index, dtype="string")
        for header in headers:
            if header in raw.columns:
                text = raw[header].astype("string").str.strip().replace("", pd.NA)
                value = value.fillna(text)
        added[field] = value
    return raw.assign(**added)


def check_profiles(profiles: Iterable[ExportProfile]) -> None:
    """Raise ProfileError when a profile maps a header onto a column the contract does not have."""
    for profile in profiles:
        unknown = sorted(set(profile.aliases.values()) - set(CANONICAL_COLUMNS))
        if unknown:
            raise ProfileError(f"export profile {profile.name} names unknown canonical columns: {', '.join(unknown)}")
        states = sorted(set(profile.status_vocabulary) - set(CANONICAL_COLUMNS))
        if states:
            raise ProfileError(f"export profile {profile.name}: status vocabulary of unknown columns {states}")


def known_profiles() -> tuple[ExportProfile, ...]:
    """The shipped profiles, checked against the contract."""
    profiles = export_profiles()
    check_profiles(profiles)
    return profiles


def score_profile(profile: ExportProfile, headers: Iterable[str]) -> tuple[str, ...]:
    """The profile's distinctive headers that a file has (compared folded: `CreatedDate` is `Created Date`)."""
    folded = {fold_header(h) for h in headers}
    return tuple(sorted({fold_header(d) for d in profile.distinctive} & folded))


def detect_profile(headers: Sequence[str], profiles: Sequence[ExportProfile] | None = None) -> ProfileMatch:
    """The profile whose distinctive headers the file has most of (ties: the larger share of them); else generic."""
    best: tuple[int, float, str] | None = None
    chosen = ProfileMatch(None)
    for profile in known_profiles() if profiles is None else profiles:
        matched = score_profile(profile, headers)
        if len(matched) < profile.min_matches:
            continue
        marks = len({fold_header(d) for d in profile.distinctive})
        # A lower name wins a full tie, so that detection never depends on file-system order.
        key = (len(matched), len(matched) / marks, "~" + profile.name)
        if best is None or key[:2] > best[:2]:
            best, chosen = key, ProfileMatch(profile, matched)
    return chosen


def choose_profile(headers: Sequence[str], forced: str | None = None,
                   profiles: Sequence[ExportProfile] | None = None) -> ProfileMatch:
    """The profile named by `--profile` (`generic` for none), else the one detected from the headers."""
    pool = known_profiles() if profiles is None else profiles
    if not forced:
        return detect_profile(headers, pool)
    if forced == GENERIC:
        return ProfileMatch(None, forced=True)
    for profile in pool:
        if profile.name == forced:
            return ProfileMatch(profile, score_profile(profile, headers), forced=True)
    names = ", ".join([GENERIC, *(p.name for p in pool)])
    raise ProfileError(f"unknown export profile {forced!r}; known profiles: {names}")
