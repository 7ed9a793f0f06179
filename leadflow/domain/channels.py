"""Lead channels and UTM tags: one documented vocabulary, with the spellings of real exports mapped onto it.

The vocabulary and its spellings are data: `leadflow/config/policies/channels.json` (versioned, validated here),
extended or overridden by a channel map file named in `LEADFLOW_CHANNEL_MAP`. A channel value is folded (accents,
case, punctuation and spaces) and looked up; a spelling that names no channel keeps its folded form and is counted
in the intake summary. UTM values are folded the same way (punctuation but separators kept) and their common
medium and source synonyms merged, so a report lists one campaign once. All work is done once per distinct value.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, StringConstraints, model_validator

from leadflow.config.policy import PolicyError, VersionedPolicy, load_policy

__all__ = [
    "UTM_KINDS",
    "ChannelMapFile",
    "ChannelPolicy",
    "ChannelVocabulary",
    "active_vocabulary",
    "fold_channel",
    "fold_utm",
    "listed_unknown_channels",
    "load_vocabulary",
    "normalize_channels",
    "normalize_utm",
    "unknown_channels",
]

try:
    import pyarrow  # noqa: F401

    _STR = pd.StringDtype("pyarrow")
except ImportError:  # pragma: no cover
    _STR = pd.StringDtype("python")

UTM_KINDS = ("utm_source", "utm_medium", "utm_campaign")
# A channel name is what `lead_submissions.source` stores (64 characters at most) and what reports group by.
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Spelling = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# A UTM value as leadflow stores it (utm_* columns hold 200 characters).
UtmName = Annotated[str, StringConstraints(pattern=r"^[^\sA-Z]+$", max_length=200)]
UTM_LIMIT = 200
# Unknown channel spellings listed by name in summaries: only those seen this often, at most this many and this long;
# a column of addresses or names mapped onto `source` by mistake must not put people's data into an artifact.
LIST_MIN_COUNT = 2
LIST_MAX = 20
LIST_MAX_LENGTH = 40
OTHER_LABEL = "(other)"

_SEPARATORS = re.compile(r"[\s_\-+]+")
_NOT_WORD = re.compile(r"[\W_]+")


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=65_536)
def fold_channel(value: str) -> str | None:
    """A channel spelling folded to a slug: accents dropped, lower case, runs of anything else one `_`."""
    slug = _NOT_WORD.sub("_", _strip_accents(value).casefold()).strip("_")
    return slug or None


@functools.lru_cache(maxsize=65_536)
def fold_utm(value: str) -> str | None:
    """A UTM value folded: NFKC, lower case, trimmed, runs of spaces, `-`, `_` and `+` one `_`; the rest kept.

    Dots and other punctuation stay (`google.com`, `(direct)`), so a value keeps its meaning; only what people
    type differently for the same thing (case, spaces, separators) is made one.
    """
    slug = _SEPARATORS.sub("_", unicodedata.normalize("NFKC", value).casefold()).strip("_")
    return slug or None


def _compact(slug: str) -> str:
    """The folded spelling without separators, so `PaidSearch`, `paid-search` and `paid_search` meet."""
    return slug.replace("_", "")


class ChannelPolicy(VersionedPolicy):
    """The channel vocabulary: each channel's meaning, the spellings that mean it, and UTM synonyms."""

    channels: dict[ChannelName, Annotated[str, StringConstraints(min_length=1, max_length=300)]] = Field(
        min_length=1, description="Every canonical channel and what it means.")
    aliases: dict[ChannelName, list[Spelling]] = Field(
        default_factory=dict, description="Channel -> spellings seen in exports and forms (folded before matching).")
    utm_medium: dict[UtmName, list[Spelling]] = Field(
        default_factory=dict, description="Canonical utm_medium -> its synonyms.")
    utm_source: dict[UtmName, list[Spelling]] = Field(
        default_factory=dict, description="Canonical utm_source -> its synonyms.")

    @model_validator(mode="after")
    def _aliases_name_channels(self) -> ChannelPolicy:
        unknown = sorted(set(self.aliases) - set(self.channels))
        if unknown:
            raise ValueError(f"aliases name channels that are not in the vocabulary: {', '.join(unknown)}")
        _lookup(self.channels, self.aliases, fold_channel)
        for kind in ("utm_medium", "utm_source"):
            groups = getattr(self, kind)
            _lookup(groups, groups, fold_utm)
        return self


class ChannelMapFile(VersionedPolicy):
    """A site's channel map: extra channels, spellings and UTM synonyms laid over the built-in vocabulary."""

    channels: dict[ChannelName, Annotated[str, StringConstraints(min_length=1, max_length=300)]] = Field(
        default_factory=dict, description="Channels to add to the vocabulary (or to describe anew).")
    aliases: dict[ChannelName, list[Spelling]] = Field(
        default_factory=dict, description="Channel -> spellings; a spelling listed here wins over the built-in one.")
    utm_medium: dict[UtmName, list[Spelling]] = Field(default_factory=dict)
    utm_source: dict[UtmName, list[Spelling]] = Field(default_factory=dict)


def _lookup(names: Iterable[str], groups: Mapping[str, list[str]], fold: Callable[[str], str | None]
            ) -> tuple[dict[str, str], dict[str, str]]:
    """Folded spelling -> name and compact spelling -> name; a spelling that would mean two names is an error."""
    exact: dict[str, str] = {}
    compact: dict[str, str] = {}
    clashes: list[str] = []
    pairs = [(name, name) for name in names] + [(name, s) for name, spellings in groups.items() for s in spellings]
    for name, spelling in pairs:
        key = fold(spelling)
        if key is None:
            clashes.append(f"{spelling!r} folds to nothing")
            continue
        for table, k in ((exact, key), (compact, _compact(key))):
            if table.setdefault(k, name) != name:
                clashes.append(f"{spelling!r} means both {table[k]} and {name}")
    if clashes:
        raise ValueError("; ".join(dict.fromkeys(clashes)))
    return exact, compact


@dataclass(frozen=True)
class ChannelVocabulary:
    """The vocabulary in force, compiled for lookups: channels, folded spellings, UTM synonyms and its version."""

    version: str
    channels: Mapping[str, str]
    exact: Mapping[str, str]
    compact: Mapping[str, str]
    utm: Mapping[str, tuple[Mapping[str, str], Mapping[str, str]]]

    @classmethod
    def build(cls, policy: ChannelPolicy, overlay: ChannelMapFile | None = None) -> ChannelVocabulary:
        """Compile a policy, with a channel map laid over it: its spellings win over the built-in ones."""
        channels = {**policy.channels, **(overlay.channels if overlay else {})}
        exact, compact = _lookup(policy.channels, policy.aliases, fold_channel)
        utm = {kind: _lookup(getattr(policy, kind), getattr(policy, kind), fold_utm)
               for kind in ("utm_medium", "utm_source")}
        version = policy.version
        if overlay is not None:
            unknown = sorted(set(overlay.aliases) - set(channels))
            if unknown:
                raise PolicyError(f"channel map {overlay.version}: aliases name channels that are not in the "
                                  f"vocabulary: {', '.join(unknown)} (add them under \"channels\")")
            try:
                over_exact, over_compact = _lookup(overlay.channels, overlay.aliases, fold_channel)
                over_utm = {kind: _lookup(getattr(overlay, kind), getattr(overlay, kind), fold_utm)
                            for kind in ("utm_medium", "utm_source")}
            except ValueError as exc:
                raise PolicyError(f"channel map {overlay.version} is invalid: {exc}") from exc
            exact, compact = {**exact, **over_exact}, {**compact, **over_compact}
            utm = {kind: ({**utm[kind][0], **over_utm[kind][0]}, {**utm[kind][1], **over_utm[kind][1]})
                   for kind in utm}
            version = f"{policy.version}+{overlay.version}"
        return cls(version=version, channels=channels, exact=exact, compact=compact, utm=utm)

    def channel_of(self, spelling: str) -> str | None:
        """The channel a spelling names; an unknown spelling keeps its folded form; None when nothing is left."""
        slug = fold_channel(spelling)
        if slug is None:
            return None
        return self.exact.get(slug) or self.compact.get(_compact(slug)) or slug[:64]

    def utm_of(self, kind: str, value: str) -> str | None:
        """A UTM value folded, and merged with its synonyms for utm_medium and utm_source."""
        slug = fold_utm(value)
        if slug is None:
            return None
        if kind in self.utm:
            exact, compact = self.utm[kind]
            slug = exact.get(slug) or compact.get(_compact(slug)) or slug
        return slug[:UTM_LIMIT]


def load_vocabulary(channel_map: str | Path | None = None, policy: str | Path = "channels") -> ChannelVocabulary:
    """The built-in channel policy (or another one), with the channel map file `channel_map` laid over it."""
    base = load_policy(ChannelPolicy, policy)
    overlay = None
    if channel_map:
        overlay = _load_map(Path(channel_map))
    return ChannelVocabulary.build(base, overlay)


def _load_map(path: Path) -> ChannelMapFile:
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read channel map {path}: {exc}".splitlines()[0]) from exc
        try:
            return ChannelMapFile.model_validate(data)
        except ValueError as exc:
            raise PolicyError(f"channel map {path} is invalid: {exc}".replace("\n", " ")) from exc
    return load_policy(ChannelMapFile, path if path.suffix else path.with_suffix(".json"))


@functools.lru_cache(maxsize=8)
def _cached(channel_map: str | None) -> ChannelVocabulary:
    return load_vocabulary(channel_map)


def active_vocabulary() -> ChannelVocabulary:
    """The vocabulary in force: the built-in policy with `LEADFLOW_CHANNEL_MAP` laid over it (read once)."""
    from leadflow.config.settings import get_settings

    return _cached(get_settings().channel_map)


def _per_value(s: pd.Series, fn: Callable[[str], str | None]) -> pd.Series:
    """`fn` applied once per distinct text value of `s` and broadcast back; missing and empty values are NA."""
    if not isinstance(s.dtype, pd.StringDtype):
        s = s.astype(_STR)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    results = np.array([fn(str(u)) for u in uniques] + [None], dtype=object)
    return pd.Series(results[codes], index=s.index, dtype=_STR)


def normalize_channels(s: pd.Series, vocabulary: ChannelVocabulary | None = None) -> pd.Series:
    """Canonical channel of each value (`Email Marketing` -> email_campaign); unknown ones keep their folded form."""
    vocab = vocabulary or active_vocabulary()
    return _per_value(s, vocab.channel_of)


def normalize_utm(s: pd.Series, kind: str, vocabulary: ChannelVocabulary | None = None) -> pd.Series:
    """Folded UTM values of one column (`utm_source`, `utm_medium` or `utm_campaign`), synonyms merged."""
    if kind not in UTM_KINDS:
        raise ValueError(f"unknown UTM column {kind!r}; expected one of {', '.join(UTM_KINDS)}")
    vocab = vocabulary or active_vocabulary()
    return _per_value(s, functools.partial(vocab.utm_of, kind))


def unknown_channels(channels: pd.Series, vocabulary: ChannelVocabulary | None = None) -> dict[str, int]:
    """How often each normalized channel value outside the vocabulary occurs (all of them, for run totals)."""
    vocab = vocabulary or active_vocabulary()
    counts = channels.value_counts(dropna=True)
    return {str(k): int(n) for k, n in counts.items() if k not in vocab.channels}


def listed_unknown_channels(counts: Mapping[str, int]) -> dict[str, int]:
    """Unknown channel spellings for a summary: the frequent, short ones by name, the rest summed as `(other)`.

    A value seen once, or longer than a channel name is likely to be, is most likely a wrong column (addresses,
    names) mapped onto `source`: it is counted, never shown.
    """
    shown = sorted(((k, n) for k, n in counts.items()
                    if n >= LIST_MIN_COUNT and len(k) <= LIST_MAX_LENGTH and not re.search(r"\d{5}", k)),
                   key=lambda kv: (-kv[1], kv[0]))[:LIST_MAX]
    listed = dict(shown)
    rest = sum(counts.values()) - sum(listed.values())
    if rest:
        listed[OTHER_LABEL] = rest
    return listed
