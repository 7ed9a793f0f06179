"""Check Company Existence: match leads to accounts by domain first, then by cleaned name, fuzzy within blocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from leadflow.domain import normalize as nz
from leadflow.domain.qualification import MatchBands

_TEXT = pd.StringDtype("pyarrow")
# Bands: domain and auto_link link the lead, needs_review keeps the candidate for a human, new_company makes an
# account, no_company means the lead names no company at all (nothing to match, nothing to create).
BANDS: tuple[str, ...] = ("domain", "auto_link", "needs_review", "new_company", "no_company")
MATCH_COLUMNS = ("match_band", "match_method", "match_score", "matched_account_id", "candidate_account_id",
                 "candidate_name_key", "company_key_clean", "company_domain_clean", "new_name", "new_name_key",
                 "new_domain", "match_details")


def clean_company_names(names: pd.Series) -> pd.Series:
    """Matching keys of company names: case, punctuation, accents, 'the' and legal suffixes removed."""
    return nz.clean_company_name(names).astype(_TEXT)


def clean_websites(websites: pd.Series) -> pd.Series:
    """Bare domains of websites: scheme, www., port and path removed; NA when not a domain."""
    return nz.website_to_domain(websites).astype(_TEXT)


def _by_distinct(clean: Callable[[pd.Series], pd.Series], values: pd.Series) -> pd.Series:
    """An element-wise cleaning run once per distinct value and spread back (names and domains repeat a lot)."""
    text = values.astype(_TEXT)
    distinct = text.dropna().unique()
    if len(distinct) == 0:
        return pd.Series(pd.NA, index=values.index, dtype=_TEXT)
    cleaned = clean(pd.Series(distinct, dtype=_TEXT)).astype(_TEXT)
    return text.map(pd.Series(cleaned.to_numpy(), index=pd.Index(distinct, dtype=_TEXT))).astype(_TEXT)


def block_keys(keys: pd.Series, prefix: int) -> pd.Series:
    """Blocking key of each name key: its first letters without spaces. Only keys in one block are compared."""
    return keys.astype(_TEXT).str.replace(" ", "", regex=False).str.slice(0, prefix)


def similarity(a: str, b: str) -> float:
    """The fuzzy score of two cleaned name keys (0..100): word-order-insensitive edit similarity."""
    return float(fuzz.token_sort_ratio(a, b))


@dataclass(frozen=True)
class _Best:
    index: np.ndarray
    score: np.ndarray


def _best_in_blocks(queries: pd.Series, choices: pd.Series, prefix: int) -> _Best:
    """For each query key, the position (in `choices`) and score of its best choice in the same block."""
    best_index = np.full(len(queries), -1, dtype=np.int64)
    best_score = np.zeros(len(queries), dtype=np.float64)
    if queries.empty or choices.empty:
        return _Best(best_index, best_score)
    q_blocks = block_keys(queries, prefix).to_numpy(dtype=object)
    c_blocks = block_keys(choices, prefix).to_numpy(dtype=object)
    q_text = queries.to_numpy(dtype=object)
    c_text = choices.to_numpy(dtype=object)
    c_positions = pd.Series(np.arange(len(choices))).groupby(c_blocks).indices
    for block, q_pos in pd.Series(np.arange(len(queries))).groupby(q_blocks).indices.items():
        c_pos = c_positions.get(block)
        if c_pos is None:
            continue
        scores = cdist(q_text[q_pos], c_text[c_pos], scorer=fuzz.token_sort_ratio, workers=1)
        top = scores.argmax(axis=1)
        best_index[q_pos] = c_pos[top]
        best_score[q_pos] = scores[np.arange(len(q_pos)), top]
    return _Best(best_index, best_score)


def _cluster_new_keys(keys: pd.Series, domains: pd.Series, bands: MatchBands) -> dict[str, str]:
    """Canonical key of each distinct new company key: near-duplicates in one batch become one account.

    As when linking to a known account, two names on different web domains are two companies however alike they
    read (`Zyxquant 1` on zyxquant1.io is not `Zyxquant 2` on zyxquant2.io); a name without a domain may join
    either. `domains` is lined up with `keys` by position.
    """
    counts = keys.value_counts().to_dict()
    ordered = sorted(counts, key=lambda k: (-counts[k], k))
    pairs = pd.DataFrame({"key": keys.to_numpy(dtype=object), "domain": domains.to_numpy(dtype=object,
                                                                                         na_value=None)})
    pairs = pairs.dropna().drop_duplicates()
    domains_of: dict[str, set[str]] = {}
    for key, domain in zip(pairs["key"].tolist(), pairs["domain"].tolist(), strict=True):
        domains_of.setdefault(key, set()).add(domain)
    canonical: dict[str, str] = {}
    cluster_domains: dict[str, set[str]] = {}
    blocks = block_keys(pd.Series(ordered, dtype=_TEXT), bands.block_prefix).to_numpy(dtype=object)
    heads: dict[str, list[str]] = {}
    for key, block in zip(ordered, blocks, strict=True):
        members = heads.setdefault(block, [])
        mine = domains_of.get(key, set())
        head = None
        if members:
            scores = cdist([key], members, scorer=fuzz.token_sort_ratio, workers=1)[0]
            # The best-scoring near-duplicate whose domains agree with this name's (stable: ties keep first heads).
            for top in np.argsort(-scores, kind="stable"):
                if scores[top] < bands.auto_link_min:
                    break
                theirs = cluster_domains[members[top]]
                if not mine or not theirs or mine & theirs:
                    head = members[top]
                    break
        if head is None:
            members.append(key)
            head = key
            cluster_domains[head] = set()
        cluster_domains[head] |= mine
        canonical[key] = head
    return canonical


def _by_free_mail(domains: pd.Series) -> dict[str, bool]:
    """Whether each distinct domain is a free-mail provider."""
    distinct = domains.dropna().unique()
    return dict(zip(distinct, nz.is_free_mail(pd.Series(distinct, dtype=_TEXT)).tolist(), strict=True))


def _json_text(values: pd.Series) -> pd.Series:
    """A text column as JSON string literals (null for NA); keys and domains never hold quotes, but be safe."""
    safe = values.astype(_TEXT).str.replace("\\", "", regex=False).str.replace('"', "", regex=False)
    return ('"' + safe + '"').fillna("null")


def match_companies(leads: pd.DataFrame, accounts: pd.DataFrame, bands: MatchBands) -> pd.DataFrame:
    """Band, score and evidence of each lead's company against the known accounts.

    `leads` has company, company_key (optional), company_domain (optional) and email_domain; `accounts` has id,
    name_key and domain. Domain first (a free-mail domain never counts), then the exact cleaned name, then the
    best fuzzy candidate within the lead's block. Returns MATCH_COLUMNS on the leads' index.
    """
    n = len(leads)
    index = leads.index
    names = (leads["company"] if "company" in leads.columns else pd.Series(pd.NA, index=index)).astype(_TEXT)
    if "company_key" in leads.columns:
        # Intake stores the cleaned key: only leads without one are cleaned here.
        key = leads["company_key"].astype(_TEXT)
        missing = key.isna().to_numpy()
        if missing.any():
            key = key.copy()
            key.loc[missing] = _by_distinct(clean_company_names, names.loc[missing]).to_numpy()
    else:
        key = _by_distinct(clean_company_names, names)
    key = key.mask(key.isin(bands.ignored_names).to_numpy(dtype=bool, na_value=False))
    raw_domain = (leads["company_domain"] if "company_domain" in leads.columns
                  else pd.Series(pd.NA, index=index, dtype=_TEXT)).astype(_TEXT)
    domain = _by_distinct(clean_websites, raw_domain)
    free = domain.map(_by_free_mail(domain), na_action="ignore").fillna(False).to_numpy(dtype=bool)
    domain = domain.mask(free)
    acc_ids = accounts["id"].to_numpy(dtype=np.int64) if len(accounts) else np.zeros(0, dtype=np.int64)
    acc_keys = accounts["name_key"].astype(_TEXT) if len(accounts) else pd.Series([], dtype=_TEXT)
    acc_domains = accounts["domain"].astype(_TEXT) if len(accounts) else pd.Series([], dtype=_TEXT)

    band = np.full(n, "new_company", dtype=object)
    method = np.full(n, "none", dtype=object)
    score = np.zeros(n, dtype=np.float64)
    matched = np.full(n, -1, dtype=np.int64)
    candidate = np.full(n, -1, dtype=np.int64)
    no_company = key.isna().to_numpy() & domain.isna().to_numpy()
    band[no_company] = "no_company"

    # 1. Domain: unique per account, so an exact hit is the account.
    by_domain = pd.Series(np.arange(len(accounts)), index=acc_domains.to_numpy(dtype=object)).loc[
        lambda s: s.index.notna()]
    by_domain = by_domain[~by_domain.index.duplicated()]
    pos = domain.map(by_domain).to_numpy(dtype="float64", na_value=np.nan)
    hit = ~np.isnan(pos)
    matched[hit] = acc_ids[pos[hit].astype(np.int64)]
    band[hit], method[hit], score[hit] = "domain", "domain", 100.0

    # 2. Exact cleaned name, then 3. the best fuzzy candidate of the same block.
    open_rows = np.flatnonzero(~hit & key.notna().to_numpy())
    if len(open_rows) and len(accounts):
        queries = key.iloc[open_rows]
        distinct = pd.Series(queries.unique()).dropna().astype(_TEXT)
        best = _best_in_blocks(distinct, acc_keys, bands.block_prefix)
        lookup = pd.DataFrame({"pos": best.index, "score": best.score}, index=distinct.to_numpy(dtype=object))
        found = lookup.reindex(queries.to_numpy(dtype=object))
        b_pos = found["pos"].to_numpy(dtype=np.int64)
        b_score = found["score"].to_numpy(dtype=np.float64)
        has = b_pos >= 0
        rows = open_rows[has]
        cand_pos = b_pos[has]
        s = b_score[has]
        lead_dom = domain.to_numpy(dtype=object, na_value=None)[rows]
        acc_dom = acc_domains.to_numpy(dtype=object, na_value=None)[cand_pos]
        # Same name but two different known domains: likely a namesake or a subsidiary, so a human decides.
        conflict = np.array([a is not None and b is not None and a != b for a, b in zip(lead_dom, acc_dom,
                                                                                       strict=True)], dtype=bool)
        link = (s >= bands.auto_link_min) & ~conflict
        review = ~link & (s >= bands.needs_review_min)
        score[rows] = s
        candidate[rows] = acc_ids[cand_pos]
        method[rows] = np.where(s >= 100, "name_exact", "name_fuzzy")
        band[rows[link]] = "auto_link"
        matched[rows[link]] = acc_ids[cand_pos[link]]
        band[rows[review]] = "needs_review"
        weak = ~link & ~review
        candidate[rows[weak]] = -1
        method[rows[weak]] = "none"
    candidate[band == "auto_link"] = -1
    candidate[band == "domain"] = -1

    # New companies: near-duplicate names within the batch share one new account.
    is_new = band == "new_company"
    new_key = pd.Series(pd.NA, index=index, dtype=_TEXT)
    new_name = pd.Series(pd.NA, index=index, dtype=_TEXT)
    if is_new.any():
        keys = key[is_new]
        named = keys.notna().to_numpy()
        mapping = _cluster_new_keys(keys[named], domain[is_new][named], bands) if named.any() else {}
        canon = keys.map(mapping).astype(_TEXT)
        # A company known only by its domain is keyed by that domain.
        canon = canon.where(canon.notna(), domain[is_new])
        new_key.loc[is_new] = canon.to_numpy()
        spelled = _by_distinct(nz.tidy_text, names[is_new]) if "company" in leads.columns else canon
        new_name.loc[is_new] = spelled.where(spelled.notna(), canon).str.slice(0, 300).to_numpy()

    cand_key = pd.Series(pd.NA, index=index, dtype=_TEXT)
    has_cand = candidate >= 0
    if has_cand.any():
        key_of = pd.Series(acc_keys.to_numpy(dtype=object), index=acc_ids)
        cand_key.loc[has_cand] = key_of.reindex(candidate[has_cand]).to_numpy()
    out = pd.DataFrame(
        {
            "match_band": pd.array(band, dtype=_TEXT),
            "match_method": pd.array(method, dtype=_TEXT),
            "match_score": np.round(score, 1),
            "matched_account_id": pd.array(np.where(matched >= 0, matched, None), dtype="Int64"),
            "candidate_account_id": pd.array(np.where(candidate >= 0, candidate, None), dtype="Int64"),
            "candidate_name_key": cand_key,
            "company_key_clean": key,
            "company_domain_clean": domain,
            "new_name": new_name,
            "new_name_key": new_key,
            "new_domain": domain.where(pd.Series(is_new, index=index), pd.NA).astype(_TEXT),
        },
        index=index,
    )
    out["match_details"] = match_details_json(out, free)
    return out


def match_details_json(match: pd.DataFrame, free_mail: np.ndarray) -> pd.Series:
    """The evidence of each match as JSON text, built column-wise."""
    text = '{"band": ' + _json_text(match["match_band"]) + ', "method": ' + _json_text(match["match_method"])
    text = text + ', "score": ' + match["match_score"].astype(str)
    text = text + ', "key": ' + _json_text(match["company_key_clean"])
    text = text + ', "domain": ' + _json_text(match["company_domain_clean"])
    text = text + ', "free_mail_ignored": ' + pd.Series(np.where(free_mail, "true", "false"), index=match.index)
    text = text + ', "candidate_account_id": ' + match["candidate_account_id"].astype(_TEXT).fillna("null")
    text = text + ', "candidate_name_key": ' + _json_text(match["candidate_name_key"]) + "}"
    return text.astype(_TEXT)


def new_accounts(leads: pd.DataFrame, match: pd.DataFrame) -> pd.DataFrame:
    """One proposed account per new company (deduplicated by domain, then by name key), with its firmographics."""
    is_new = match["match_band"].eq("new_company").to_numpy(dtype=bool, na_value=False)
    if not is_new.any():
        return pd.DataFrame(columns=["name", "name_key", "domain", "industry", "employee_count", "country"])
    frame = pd.DataFrame({
        "name": match["new_name"][is_new],
        "name_key": match["new_name_key"][is_new],
        "domain": match["new_domain"][is_new],
        "industry": leads["industry"][is_new] if "industry" in leads.columns else pd.NA,
        "employee_count": (pd.to_numeric(leads["employee_count"], errors="coerce")[is_new].astype("Int64")
                           if "employee_count" in leads.columns else pd.NA),
        "country": leads["country"][is_new] if "country" in leads.columns else pd.NA,
    })
    frame = frame.loc[frame["name_key"].notna()]
    # Rows with a domain first, so a name shared by a domain and a domainless lead keeps the domain.
    frame = frame.sort_values(["domain", "name_key"], na_position="last", kind="stable")
    with_domain = frame.loc[frame["domain"].notna()].drop_duplicates("domain")
    frame = pd.concat([with_domain, frame.loc[frame["domain"].isna()]]).drop_duplicates("name_key")
    frame["name_key"] = frame["name_key"].str.slice(0, 300)
    frame["industry"] = frame["industry"].astype(_TEXT).str.slice(0, 100)
    return frame.reset_index(drop=True)


@dataclass
class LeadLinks:
    """Each lead's account (matched, new or kept) and which leads' link or match evidence changed."""

    account: pd.Series
    write: np.ndarray
    details: pd.Series


def link_leads_to_accounts(leads: pd.DataFrame, match: pd.DataFrame, new_ids: pd.Series) -> LeadLinks:
    """Decide each lead's account (matched or newly created) and which links and match evidence change.

    Assign Lead Owner writes the changes together with the priority and the owner, in one UPDATE per lead (three
    passes over the same rows took most of the qualification's write time); its `lead_qualified` event records
    the new link.
    """
    account = match["matched_account_id"].astype("Int64")
    account = account.where(account.notna(), new_ids.reindex(match.index).astype("Int64"))
    stored = pd.to_numeric(leads["account_id"], errors="coerce").astype("Int64")
    # A needs_review or no_company result never unlinks an account a lead already has (a human may have set it).
    keep_old = account.isna() & stored.notna()
    account = account.where(~keep_old, stored)
    details = match["match_details"].astype("string")
    # A column of NULLs and JSON can come back with NaN for the NULLs (pandas reads a mostly empty column as float).
    old_details = pd.Series(
        [d if isinstance(d, str) else json.dumps(d) if isinstance(d, dict | list) else None
         for d in leads["match_details"].tolist()],
        index=leads.index, dtype=object,
    )
    # A link a person decided in the review queue (leadflow/crm/review.py) stands: no later match moves it.
    reviewed = np.array([isinstance(d, str) and '"review":' in d for d in old_details], dtype=bool)
    if reviewed.any():
        held = pd.Series(reviewed, index=account.index) & stored.notna()
        account = account.where(~held, stored)
        details = details.where(~held, old_details.astype("string"))
    changed_details = [
        old is None or json.loads(old) != json.loads(new)
        for old, new in zip(old_details, details, strict=True)
    ] if old_details.notna().any() else [True] * len(leads)
    moved = (account.fillna(-1) != stored.fillna(-1)).to_numpy()
    # Evidence of a link that stays is kept: the account a run created matches by domain on the next run, and
    # rewriting "new_company" as "domain" would only churn the row.
    unlinked_or_blank = account.isna().to_numpy() | old_details.isna().to_numpy()
    write = moved | (np.asarray(changed_details, dtype=bool) & unlinked_or_blank)
    return LeadLinks(account=account, write=write, details=details)
