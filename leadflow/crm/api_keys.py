"""The `api_keys` table: keys of the sites and integrations that post leads to `leadflow api`, stored hashed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from leadflow.crm.schema import ApiKey
from leadflow.crm.store import Store
from leadflow.domain.api_intake import NewKey, new_key

KEYS = ApiKey.__table__
_SHOWN = (KEYS.c.id, KEYS.c.name, KEYS.c.prefix, KEYS.c.default_channel, KEYS.c.allowed_origins,
          KEYS.c.rate_per_minute, KEYS.c.created_at, KEYS.c.revoked_at)


class ApiKeyError(ValueError):
    """A key that cannot be created or revoked; the message says why in one line."""


def create_key(store: Store, name: str, *, default_channel: str | None = None, allowed_origins: list[str] | None = None,
               rate_per_minute: int | None = None) -> tuple[NewKey, int]:
    """Store a new key under a unique name; returns the key (its token is never stored) and its id."""
    key = new_key()
    values = {"name": name, "prefix": key.prefix, "key_hash": key.key_hash, "default_channel": default_channel,
              "allowed_origins": list(allowed_origins or []), "rate_per_minute": rate_per_minute}
    try:
        with store.begin() as conn:
            key_id = int(conn.execute(KEYS.insert().values(values).returning(KEYS.c.id)).scalar_one())
    except IntegrityError:
        raise ApiKeyError(f"an API key named {name!r} exists already (names stay taken after a revoke)") from None
    return key, key_id


def list_keys(store: Store) -> list[dict[str, Any]]:
    """Every key, revoked ones too, oldest first (without hashes)."""
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(*_SHOWN).order_by(KEYS.c.id)).mappings()]


def revoke_key(store: Store, name_or_prefix: str, now: datetime | None = None) -> dict[str, Any]:
    """Revoke the key with this name or display prefix; returns it. Revoking a revoked key changes nothing."""
    where = (KEYS.c.name == name_or_prefix) | (KEYS.c.prefix == name_or_prefix)
    with store.begin() as conn:
        rows = conn.execute(select(*_SHOWN).where(where)).mappings().all()
        if len(rows) != 1:
            raise ApiKeyError(f"no API key named {name_or_prefix!r}" if not rows else
                              f"{name_or_prefix!r} names more than one key; give its name")
        row = dict(rows[0])
        if row["revoked_at"] is None:
            row["revoked_at"] = now or datetime.now(UTC)
            conn.execute(update(KEYS).where(KEYS.c.id == row["id"]).values(revoked_at=row["revoked_at"]))
    return row


def find_active_key(store: Store, key_hash: str) -> dict[str, Any] | None:
    """The unrevoked key with this hash (id, name, default channel, allowed origins, rate), else None."""
    stmt = select(*_SHOWN).where(KEYS.c.key_hash == key_hash, KEYS.c.revoked_at.is_(None))
    with store.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return dict(row) if row else None


def find_active_keys(store: Store, key_hashes: list[str]) -> dict[str, dict[str, Any]]:
    """find_active_key for many hashes in one query (concurrent requests share it): hash -> key."""
    stmt = select(KEYS.c.key_hash, *_SHOWN).where(KEYS.c.key_hash.in_(sorted(set(key_hashes))),
                                                  KEYS.c.revoked_at.is_(None))
    with store.engine.connect() as conn:
        return {row["key_hash"]: {k: v for k, v in row.items() if k != "key_hash"}
                for row in conn.execute(stmt).mappings()}


def active_origins(store: Store) -> set[str]:
    """Every origin some unrevoked key allows (answers a CORS preflight that carries no key)."""
    with store.engine.connect() as conn:
        lists = conn.execute(select(KEYS.c.allowed_origins).where(KEYS.c.revoked_at.is_(None))).scalars().all()
    return {origin for origins in lists for origin in (origins or [])}
