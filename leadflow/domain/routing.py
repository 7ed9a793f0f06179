"""Assign Lead Owner: account owner first, then territory and segment, then capacity-weighted round robin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadflow.domain.qualification import PRIORITIES, RoutingRules, company_band

# Rules that can decide an owner, recorded on every decision.
EXISTING_OWNER = "existing_owner"
ACCOUNT_OWNER = "account_owner"
ROUND_ROBIN = "territory_segment_round_robin"
FALLBACK = "fallback_queue"
RULES: tuple[str, ...] = (EXISTING_OWNER, ACCOUNT_OWNER, ROUND_ROBIN, FALLBACK)
# Why a lead went to the fallback queue.
NO_ELIGIBLE_REP = "no_eligible_rep"
ALL_AT_CAPACITY = "eligible_reps_at_capacity"


@dataclass
class RoutingResult:
    """Every decision (one row per lead) and what it does to reps and accounts."""

    decisions: pd.DataFrame
    reserved: dict[int, int] = field(default_factory=dict)
    rotation: dict[int, int] = field(default_factory=dict)
    account_owners: dict[int, int] = field(default_factory=dict)


def lead_segments(leads: pd.DataFrame, rules: RoutingRules) -> pd.Series:
    """Sales segment of each lead from its company size (NA when the size is unknown)."""
    band = company_band(leads)
    return band.map(rules.segment_by_band).astype("string")


def _rep_table(reps: pd.DataFrame) -> dict[int, dict[str, Any]]:
    table: dict[int, dict[str, Any]] = {}
    for row in reps.to_dict("records"):
        table[int(row["id"])] = {
            "available": bool(row["active"]) and not bool(row["out_of_office"]),
            "territories": set(row["territories"] or []),
            "segments": set(row["segments"] or []),
            "max": int(row["max_open_leads"]),
            "open": int(row.get("open_leads") or 0),
            "seq": int(row.get("last_assigned_seq") or 0),
        }
    return table


def _eligible(table: dict[int, dict[str, Any]], country: str | None, segment: str | None) -> list[int]:
    """Available reps whose territory and segment cover the lead (an unknown country or size filters nothing)."""
    return [
        rep for rep, info in sorted(table.items())
        if info["available"]
        and (country is None or not info["territories"] or country in info["territories"])
        and (segment is None or not info["segments"] or segment in info["segments"])
    ]


def assign_owners(leads: pd.DataFrame, reps: pd.DataFrame, rules: RoutingRules, *,
                  enforce_capacity: bool = True) -> RoutingResult:
    """Decide an owner for each lead and record the rule that fired and the candidates it considered.

    `leads`: lead_id, owner_id (current), account_id, account_owner_id, country, priority and the company size
    columns. `reps`: id, active, out_of_office, territories, segments, max_open_leads, open_leads,
    last_assigned_seq. Leads are served P1 first, so scarce capacity goes to the hottest leads. Within the eligible
    reps the one with the largest share of free capacity wins; ties go to whoever was assigned least recently.
    With `enforce_capacity` off (replays of history) capacity is ignored and nothing is reserved.
    """
    table = _rep_table(reps)
    n = len(leads)
    segment = lead_segments(leads, rules).to_numpy(dtype=object, na_value=None)
    country = leads["country"].astype("string").to_numpy(dtype=object, na_value=None)
    current = pd.to_numeric(leads["owner_id"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    account = pd.to_numeric(leads["account_id"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    account_owner = pd.to_numeric(leads["account_owner_id"], errors="coerce").to_numpy(dtype="float64",
                                                                                        na_value=np.nan)
    rank = leads["priority"].map({p: i for i, p in enumerate(PRIORITIES)}).fillna(len(PRIORITIES))
    order = np.lexsort((leads["lead_id"].to_numpy(), rank.to_numpy()))

    owner = np.full(n, -1, dtype=np.int64)
    rule = np.full(n, FALLBACK, dtype=object)
    reason = np.full(n, None, dtype=object)
    candidates: list[list[int]] = [[] for _ in range(n)]
    known_owner: dict[int, int] = {}
    for acc, rep in zip(account, account_owner, strict=True):
        if not np.isnan(acc) and not np.isnan(rep):
            known_owner[int(acc)] = int(rep)
    seq = max((info["seq"] for info in table.values()), default=0)
    reserved: dict[int, int] = {}
    rotation: dict[int, int] = {}
    new_account_owners: dict[int, int] = {}
    eligible_cache: dict[tuple[str | None, str | None], list[int]] = {}

    def free(rep: int) -> int:
        info = table[rep]
        return info["max"] - info["open"] if enforce_capacity else 1

    waiting: list[int] = []
    for i in order:
        if not np.isnan(current[i]):
            owner[i], rule[i], candidates[i] = int(current[i]), EXISTING_OWNER, [int(current[i])]
            continue
        acc = None if np.isnan(account[i]) else int(account[i])
        acc_rep = known_owner.get(acc) if acc is not None else None
        if acc_rep is not None and acc_rep in table and table[acc_rep]["available"] and free(acc_rep) > 0:
            chosen, rule[i], candidates[i] = acc_rep, ACCOUNT_OWNER, [acc_rep]
        else:
            cache_key = (country[i], segment[i])
            pool = eligible_cache.get(cache_key)
            if pool is None:
                pool = eligible_cache[cache_key] = _eligible(table, country[i], segment[i])
            candidates[i] = ([acc_rep] if acc_rep is not None else []) + pool
            open_pool = [rep for rep in pool if free(rep) > 0]
            if not open_pool:
                reason[i] = NO_ELIGIBLE_REP if not pool else ALL_AT_CAPACITY
                if acc is not None and acc_rep is None:
                    waiting.append(i)
                continue
            if enforce_capacity:
                chosen = max(open_pool, key=lambda r: (free(r) / max(table[r]["max"], 1), -table[r]["seq"], -r))
            else:
                chosen = min(open_pool, key=lambda r: (table[r]["seq"], r))
            rule[i] = ROUND_ROBIN
            if acc is not None and acc_rep is None:
                known_owner[acc] = chosen
                new_account_owners[acc] = chosen
        owner[i] = chosen
        seq += 1
        table[chosen]["seq"] = seq
        rotation[chosen] = seq
        if enforce_capacity:
            table[chosen]["open"] += 1
            reserved[chosen] = reserved.get(chosen, 0) + 1

    # A lead that found no rep may belong to an account that got its owner from a later lead of this batch: it
    # follows that owner now, so the outcome does not depend on the order (and a re-run changes nothing).
    for i in waiting:
        acc_rep = known_owner.get(int(account[i]))
        if acc_rep is not None and table[acc_rep]["available"] and free(acc_rep) > 0:
            owner[i], rule[i], reason[i] = acc_rep, ACCOUNT_OWNER, None
            candidates[i] = [acc_rep, *candidates[i]]
            seq += 1
            table[acc_rep]["seq"] = seq
            rotation[acc_rep] = seq
            if enforce_capacity:
                table[acc_rep]["open"] += 1
                reserved[acc_rep] = reserved.get(acc_rep, 0) + 1

    decisions = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy(),
            "owner_id": pd.array(np.where(owner >= 0, owner, None), dtype="Int64"),
            "assignment_rule": pd.array(rule, dtype="string"),
            "fallback_reason": pd.array(reason, dtype="string"),
            "candidates": candidates,
            "segment": pd.array(segment, dtype="string"),
        },
        index=leads.index,
    )
    return RoutingResult(decisions=decisions, reserved=reserved,
                         rotation=rotation if enforce_capacity else {}, account_owners=new_account_owners)
