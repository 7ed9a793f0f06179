"""The sales_reps table as ops manage it: list, add, import, change capacity and out-of-office, and rep names.

Routing (crm/assignments.py) reads and reserves capacity; this module only edits what a person decides about a
rep. `sales_reps.alert_url` holds a secret (an Apprise URL), so nothing here returns it: listings say whether a rep
has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import bindparam, select, update

from leadflow.crm.schema import SalesRep
from leadflow.crm.store import Store, read_in
from leadflow.domain.reps import RepError, RepInput

REPS = SalesRep.__table__
LISTED = ("id", "email", "name", "active", "out_of_office", "territories", "segments", "max_open_leads", "open_leads")


class UnknownRep(RepError):
    """No rep has this address."""


def list_reps(store: Store) -> pd.DataFrame:
    """Every rep with routing fields, capacity in use and whether an alert URL is set (never the URL)."""
    columns = [REPS.c[name] for name in LISTED]
    with store.engine.connect() as conn:
        rows = conn.execute(select(*columns, REPS.c.alert_url.isnot(None).label("has_alert_url"))
                            .order_by(REPS.c.id)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=[*LISTED, "has_alert_url"])
    for name in ("active", "out_of_office", "has_alert_url"):
        frame[name] = frame[name].astype(bool)
    return frame


def add_rep(store: Store, rep: RepInput) -> int:
    """Insert a new rep; RepError when one has the address already (`reps set` changes an existing rep)."""
    with store.begin() as conn:
        if conn.execute(select(REPS.c.id).where(REPS.c.email == rep.email)).first() is not None:
            raise RepError("a rep with this email exists already; change it with `leadflow reps set`")
        return int(conn.execute(REPS.insert().values(**rep.row()).returning(REPS.c.id)).scalar_one())


@dataclass(frozen=True)
class ImportResult:
    """What a reps import did."""

    added: int
    updated: int


def import_reps(store: Store, reps: Sequence[RepInput]) -> ImportResult:
    """Insert or update reps by email in one transaction; open-lead counts and rotation state stay as they are."""
    if not reps:
        return ImportResult(0, 0)
    stmt = store.insert(REPS)
    update_columns = ("name", "active", "out_of_office", "territories", "segments", "max_open_leads", "alert_url")
    with store.begin() as conn:
        existing = {r[0] for r in read_in(conn, select(REPS.c.email).where(
            REPS.c.email.in_(bindparam("values", expanding=True))), [r.email for r in reps])}
        conn.execute(stmt.on_conflict_do_update(index_elements=["email"],
                                                set_={name: stmt.excluded[name] for name in update_columns}),
                     [r.row() for r in reps])
    updated = sum(r.email in existing for r in reps)
    return ImportResult(added=len(reps) - updated, updated=updated)


def set_rep(store: Store, email: str, *, capacity: int | None = None, out_of_office: bool | None = None,
            active: bool | None = None) -> dict[str, object]:
    """Change one rep's capacity, out-of-office or active flag; returns the rep as listed. UnknownRep if none."""
    values: dict[str, object] = {}
    if capacity is not None:
        values["max_open_leads"] = capacity
    if out_of_office is not None:
        values["out_of_office"] = out_of_office
    if active is not None:
        values["active"] = active
    with store.begin() as conn:
        if values:
            changed = conn.execute(update(REPS).where(REPS.c.email == email).values(**values)).rowcount
        else:
            changed = conn.execute(select(REPS.c.id).where(REPS.c.email == email)).first() is not None
        if not changed:
            raise UnknownRep("no sales rep has this email; list them with `leadflow reps list`")
        row = conn.execute(select(*(REPS.c[name] for name in LISTED)).where(REPS.c.email == email)).mappings().one()
    return dict(row)


def rep_names(store: Store, ids: Iterable[int]) -> dict[int, str]:
    """Names of the reps with these ids (ids without a rep are left out)."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    with store.engine.connect() as conn:
        rows = read_in(conn, select(REPS.c.id, REPS.c.name).where(REPS.c.id.in_(bindparam("values", expanding=True))),
                       wanted)
    return {int(r[0]): str(r[1]) for r in rows}
