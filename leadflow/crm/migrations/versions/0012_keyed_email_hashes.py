"""spam_tombstones / spam_exemptions: bare SHA-256 email hashes become keyed HMAC-SHA256 hashes

A bare SHA-256 of an address is reversible by anyone with a list of addresses; leadflow now keys the hash
(leadflow.config.settings.email_hash_key). A bare hash cannot be re-keyed without its email, so each row is matched
against sha256(email) of the leads still in the CRM: a match is rewritten to the keyed hash of that email, and a row
without a match (the tombstone of a purged lead, nearly always) is deleted. Keeping those rows would keep the very
hashes this revision exists to remove; what is lost is the known-bad-address flag for those old purged addresses,
which every other spam rule still judges when they come back. Downgrade does the reverse for rows whose lead exists.
The key is resolved only when there is a row to rewrite (on PostgreSQL, LEADFLOW_HASH_KEY must then be set).

Revision ID: 0012_keyed_email_hashes
Revises: 0011_rep_capacity_holds
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from hashlib import sha256

import sqlalchemy as sa
from alembic import op

revision = "0012_keyed_email_hashes"
down_revision = "0011_rep_capacity_holds"
branch_labels = None
depends_on = None

TABLES = ("spam_tombstones", "spam_exemptions")
_log = logging.getLogger("alembic.runtime.migration")


def _bare(email: str) -> str:
    return sha256(email.encode()).hexdigest()


def _keyed_with(key: bytes) -> Callable[[str], str]:
    return lambda email: hmac.new(key, email.encode(), sha256).hexdigest()


def _key(conn: sa.Connection) -> bytes:
    from leadflow.config.settings import email_hash_key

    return email_hash_key(database_url=conn.engine.url.render_as_string(hide_password=False))


def _rehash(conn: sa.Connection, *, to_keyed: bool) -> None:
    """Rewrite each row's hash of an existing lead's email to the keyed (or, back, the bare) hash; delete the rest."""
    rows = {table: conn.execute(sa.text(f"SELECT id, email_hash FROM {table}")).all() for table in TABLES}
    wanted = {h for found in rows.values() for _, h in found}
    if not wanted:
        return
    keyed = _keyed_with(_key(conn))
    old_hash, new_hash = (_bare, keyed) if to_keyed else (keyed, _bare)
    # Leads may be many: read their emails in pages, keep only those behind a stored hash.
    emails: dict[str, str] = {}
    result = conn.execute(sa.text("SELECT email FROM leads WHERE email IS NOT NULL").execution_options(
        yield_per=20_000))
    for (email,) in result:
        normalized = email.strip().lower()
        if normalized and (digest := old_hash(normalized)) in wanted:
            emails[digest] = normalized
    for table in TABLES:
        keep = [{"id": i, "h": new_hash(emails[h])} for i, h in rows[table] if h in emails]
        drop = [{"id": i} for i, h in rows[table] if h not in emails]
        if keep:
            conn.execute(sa.text(f"UPDATE {table} SET email_hash = :h WHERE id = :id"), keep)
        if drop:
            conn.execute(sa.text(f"DELETE FROM {table} WHERE id = :id"), drop)
        _log.info("%s: %d email hashes rewritten, %d without a lead deleted", table, len(keep), len(drop))


def upgrade() -> None:
    _rehash(op.get_bind(), to_keyed=True)


def downgrade() -> None:
    _rehash(op.get_bind(), to_keyed=False)
