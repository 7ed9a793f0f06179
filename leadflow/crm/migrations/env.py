"""Alembic environment: runs leadflow's migrations on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from leadflow.crm.schema import Base
from leadflow.crm.store import make_engine

config = context.config


def _run(connection) -> None:
    # batch mode lets later ALTERs work on SQLite, which cannot alter most constraints in place.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)
