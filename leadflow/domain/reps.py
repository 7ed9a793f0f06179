"""Sales reps as ops manage them: checking a rep's fields and a reps file before anything is written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leadflow.domain import normalize as nz

REP_COLUMNS = ("email", "name", "territories", "segments", "max_open_leads", "active", "out_of_office", "alert_url")
_SEGMENT = re.compile(r"^[a-z0-9_]{1,40}$")
MAX_CAPACITY = 100_000
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


class RepError(ValueError):
    """A rep command or reps file that cannot apply; the message is one line and names no address."""


@dataclass(frozen=True)
class RepInput:
    """One rep's checked fields, as the sales_reps table stores them."""

    email: str
    name: str
    territories: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    max_open_leads: int = 50
    active: bool = True
    out_of_office: bool = False
    alert_url: str | None = None

    def row(self) -> dict[str, Any]:
        """The sales_reps row."""
        return {"email": self.email, "name": self.name, "territories": self.territories, "segments": self.segments,
                "max_open_leads": self.max_open_leads, "active": self.active, "out_of_office": self.out_of_office,
                "alert_url": self.alert_url}


def check_capacity(value: object) -> int:
    """A capacity (most open leads at once) as an int in 0..MAX_CAPACITY, else RepError."""
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text) or int(text) > MAX_CAPACITY:
        raise RepError(f"capacity must be a whole number from 0 to {MAX_CAPACITY}, not {text[:20]!r}")
    return int(text)


def rep_email(value: object) -> str:
    """A rep's normalized address, else RepError (the message does not echo it)."""
    normalized = nz.normalize_email(pd.Series([value], dtype="string"))
    if normalized.isna().iloc[0] or not bool(nz.is_valid_email(normalized).fillna(False).iloc[0]):
        raise RepError("not a valid email address")
    return str(normalized.iloc[0])


def split_list(value: object, *, upper: bool = False) -> list[str]:
    """A `|` or `,`-separated cell as a list of trimmed, non-empty parts."""
    if not isinstance(value, str) or not value.strip():
        return []
    parts = [p.strip() for p in re.split(r"[|,]", value) if p.strip()]
    return [p.upper() for p in parts] if upper else [p.lower() for p in parts]


def check_territories(values: list[str]) -> list[str]:
    """Territories as ISO 3166 alpha-2 codes (routing compares them with leads' normalized countries)."""
    codes = nz.normalize_country(pd.Series(values, dtype="string")).tolist() if values else []
    bad = [v for v, code in zip(values, codes, strict=True) if code is None or code is pd.NA]
    if bad:
        raise RepError(f"unknown country {bad[0][:20]!r} in territories (use codes such as US, DE, GB)")
    return list(dict.fromkeys(str(c) for c in codes))


def check_segments(values: list[str]) -> list[str]:
    """Segments as slugs: the qualification policy's `segment_by_band` names them (smb, mid_market, enterprise)."""
    bad = [v for v in values if not _SEGMENT.match(v)]
    if bad:
        raise RepError(f"segments are slugs such as smb, mid_market or enterprise, not {bad[0][:20]!r}")
    return sorted(set(values), key=values.index)


def parse_flag(value: object, column: str) -> bool:
    """A true/false cell."""
    text = str(value if value is not None and value is not pd.NA else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RepError(f"{column} must be true or false, not {text[:20]!r}")


def rep_input(email: object, name: object, *, territories: object = None, segments: object = None,
              capacity: object = 50, active: object = True, out_of_office: object = False,
              alert_url: object = None) -> RepInput:
    """One rep's fields checked and normalized; RepError names the first bad field."""
    clean_name = str(name).strip() if isinstance(name, str) else ""
    if not clean_name:
        raise RepError("a rep needs a name")
    if len(clean_name) > 200:
        raise RepError("a rep's name holds at most 200 characters")
    url = alert_url.strip() if isinstance(alert_url, str) and alert_url.strip() else None
    if url is not None and ("://" not in url or len(url) > 500):
        raise RepError("alert_url must be an Apprise URL (scheme://...) of at most 500 characters")
    return RepInput(
        email=rep_email(email), name=clean_name,
        territories=check_territories(split_list(territories, upper=True) if not isinstance(territories, list)
                                      else [t.strip().upper() for t in territories if t.strip()]),
        segments=check_segments(split_list(segments) if not isinstance(segments, list)
                                else [s.strip().lower() for s in segments if s.strip()]),
        max_open_leads=check_capacity(capacity),
        active=active if isinstance(active, bool) else parse_flag(active, "active"),
        out_of_office=out_of_office if isinstance(out_of_office, bool) else parse_flag(out_of_office, "out_of_office"),
        alert_url=url,
    )


def reps_from_frame(frame: pd.DataFrame) -> list[RepInput]:
    """Every row of a reps file checked (header names as in leadflow/data/sales_reps.csv); RepError names the line.

    All or nothing: one bad row refuses the file, so a typo never leaves half a team imported.
    """
    columns = {c.strip().lower(): c for c in frame.columns}
    missing = [c for c in ("email", "name") if c not in columns]
    if missing:
        raise RepError(f"the reps file lacks the column(s) {', '.join(missing)}")
    reps: list[RepInput] = []
    seen: set[str] = set()
    for number, row in enumerate(frame.to_dict("records"), start=2):
        def cell(name: str, default: object = None, row: dict = row) -> object:
            value = row.get(columns[name]) if name in columns else None
            return default if value is None or value is pd.NA or (isinstance(value, str) and not value.strip()) \
                else value
        try:
            rep = rep_input(cell("email"), cell("name"), territories=cell("territories"), segments=cell("segments"),
                            capacity=cell("max_open_leads", cell("capacity", 50)), active=cell("active", True),
                            out_of_office=cell("out_of_office", False), alert_url=cell("alert_url"))
        except RepError as exc:
            raise RepError(f"line {number}: {exc}") from None
        if rep.email in seen:
            raise RepError(f"line {number}: the same rep appears twice")
        seen.add(rep.email)
        reps.append(rep)
    return reps


def rep_label(names: dict[int, str], rep_id: object) -> str:
    """How summaries and notices name a rep: their name, else `rep <id>` when the rep is unknown."""
    try:
        key = int(rep_id)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(rep_id)
    return names.get(key) or f"rep {key}"
