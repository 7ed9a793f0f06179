"""The leads table as a CRM export's own state writes it: consent withdrawn, do-not-contact, imported owners."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, false, true, update

from leadflow.crm.schema import Lead
from leadflow.crm.store import Store

LEADS = Lead.__table__


def withdraw_consent(conn: Connection, store: Store, lead_ids: Sequence[int], now: datetime) -> None:
    """Set email_opt_in false on these leads: an opt-out in the export wins over any earlier consent."""
    stmt = (update(LEADS).where(LEADS.c.id == bindparam("b_id"), LEADS.c.email_opt_in.is_not(False))
            .values(email_opt_in=false(), updated_at=bindparam("b_now")))
    store.bulk(conn, stmt, pd.DataFrame({"b_id": [int(i) for i in lead_ids], "b_now": now}))


def mark_do_not_contact(conn: Connection, store: Store, lead_ids: Sequence[int], now: datetime) -> None:
    """Set do_not_contact on these leads (an import never clears it: consent and do-not-contact always win)."""
    stmt = (update(LEADS).where(LEADS.c.id == bindparam("b_id"), LEADS.c.do_not_contact.is_not(True))
            .values(do_not_contact=true(), updated_at=bindparam("b_now")))
    store.bulk(conn, stmt, pd.DataFrame({"b_id": [int(i) for i in lead_ids], "b_now": now}))


def keep_owners(conn: Connection, store: Store, owners: dict[int, int], now: datetime) -> int:
    """Give each lead without an owner the rep its export named; a lead that has an owner keeps it. Returns leads set.

    The imported owner holds no open-lead slot (holds_capacity stays false): the lead was the rep's before it came.
    """
    if not owners:
        return 0
    stmt = (update(LEADS).where(LEADS.c.id == bindparam("b_id"), LEADS.c.owner_id.is_(None))
            .values(owner_id=bindparam("b_owner"), updated_at=bindparam("b_now")))
    frame = pd.DataFrame({"b_id": list(owners), "b_owner": list(owners.values()), "b_now": now})
    return store.bulk(conn, stmt, frame)
