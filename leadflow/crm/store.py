"""The one way into the CRM database: engines, migrations and every read and write, on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    case,
    cast,
    create_engine,
    event,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.dml import OnConflictDoUpdate
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.types import NullType

from leadflow.crm.schema import (
    Base,
    IntakeBatch,
    Lead,
    LeadEvent,
    LeadSubmission,
)
from leadflow.domain.contract import MAX_COUNTERS, MERGED_DETAILS

# What callers above the crm catch for any database failure, without importing SQLAlchemy themselves.
DatabaseError = SQLAlchemyError

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
EVENTS = LeadEvent.__table__
BATCHES = IntakeBatch.__table__
IN_LIST_SIZE = 5_000
# Keys per `= ANY(:array)` statement on PostgreSQL: one statement per chunk of intake.
ANY_ARRAY_SIZE = 50_000
# PostgreSQL's SQLSTATE of a unique violation: a key another run stored since this transaction looked.
UNIQUE_VIOLATION = "23505"
# Bulk writes of at least this many rows go through COPY and a staging table on PostgreSQL (fewer rows: the
# staging table's CREATE costs more than executemany saves).
COPY_MIN_ROWS = 100
MIGRATIONS = Path(__file__).parent / "migrations"
# Columns of the big tables whose statistics the planner uses besides those of an index (which refresh_statistics
# takes from the models): the ones the crm's WHERE clauses and joins compare. ANALYZE leaves out the rest (names,
# companies, UTM fields, scores): at 100k leads it spent two thirds of its time on them. Tables not named here are
# analyzed whole. A column list still updates pg_class's row and page counts; it leaves n_mod_since_analyze as it
# was, so autovacuum, where it runs, analyzes every column later, off the intake's path.
PLANNER_COLUMNS = {
    "leads": ("email", "is_spam", "status", "step_mark", "step_marked_at", "qualified_at", "first_touch_at",
              "last_touch_at", "holds_capacity", "do_not_contact", "email_opt_in", "owner_id", "account_id",
              "spam_flagged_at"),
    "lead_submissions": ("lead_id", "batch_id", "submitted_at", "received_at"),
    "lead_events": ("lead_id", "event_type", "occurred_at"),
}

_log = logging.getLogger(__name__)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def records(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts for bound parameters: NA, NaN and NaT become None, numpy scalars Python."""
    part = frame if columns is None else frame[list(columns)]
    if part.empty:
        return []
    as_objects = part.astype(object)
    return as_objects.where(part.notna(), None).to_dict("records")


def _bind_values(values: pd.Series, dialect: str) -> list[Any]:
    """One column as plain Python bind values: None for missing, and datetimes as SQLAlchemy stores them."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        if dialect == "sqlite":
            # SQLAlchemy's SQLite DATETIME text format, so stored times compare correctly as strings.
            naive = values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz else values
            # Each distinct time is formatted once: many columns hold one stamp for the whole chunk (created_at).
            codes, uniques = pd.factorize(naive.to_numpy(dtype="datetime64[us]"))
            if not len(uniques):
                return [None] * len(values)
            text = np.char.replace(np.datetime_as_string(uniques, unit="us"), "T", " ").astype(object)
            return np.append(text, None)[codes].tolist()
        return values.to_numpy(dtype=object, na_value=None).tolist()
    return values.to_numpy(dtype=object, na_value=None).tolist()


def utc(values: pd.Series) -> pd.Series:
    """Datetimes read back from either database as timezone-aware UTC (SQLite hands them back naive, or as text).

    Any ISO 8601 precision: SQLite's CURRENT_TIMESTAMP defaults store whole seconds, SQLAlchemy microseconds.
    """
    return pd.to_datetime(values, utc=True, format="ISO8601")


def chunked(values: Sequence[Any], size: int = IN_LIST_SIZE) -> Iterator[Sequence[Any]]:
    """Consecutive slices of `values` short enough for one IN-list."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _as_any(stmt, name: str = "values", as_text: bool = False):
    """The statement with each `col IN (expanding :name)` as `col = ANY(:name)`, one array parameter (PostgreSQL).

    An IN-list of 5,000 keys is 5,000 bound parameters that SQLAlchemy renders into the SQL text and the server
    parses and plans each time; an array is one parameter, and one statement serves any number of keys.
    `as_text`: the parameter is the array's text (`_array_text`), cast to an array of the column's type (text
    without a length limit: a longer key is compared whole, not cut to the column's length).
    """

    def replace(element: Any) -> Any:
        if (isinstance(element, BinaryExpression) and element.operator is operators.in_op
                and isinstance(element.right, BindParameter) and element.right.expanding
                and element.right.key == name):
            kind = element.left.type
            if as_text:
                of = String() if isinstance(kind, String) else kind
                # Untyped: psycopg sends text as "unknown", which the server reads straight into the array type, a
                # constant when planning (hashed, index-scanned). A text-typed one would be cast at run time, per
                # row: the planner then walked a 50,000-key array for every row of the table.
                return element.left == any_(cast(bindparam(name), postgresql.ARRAY(of)))
            return element.left == any_(bindparam(name, type_=postgresql.ARRAY(kind)))
        return None

    return visitors.replacement_traverse(stmt, {}, replace)


def _array_text(values: Sequence[Any]) -> str | None:
    """PostgreSQL's text form of a one-dimensional array of these strings, or of these integers; None for any other
    values (psycopg then adapts the list itself).

    psycopg builds that text element by element in Python, some 2.5 us each: a quarter of a second for a chunk's
    50,000 submission keys, and as much again for its emails. The server reads the same text either way.
    """
    if not values:
        return "{}"
    if all(type(v) is str for v in values):
        plain = ",".join(values)
        if "\x00" in plain:
            return None  # psycopg refuses a NUL before sending it: that error stays
        if '"' in plain or "\\" in plain:
            values = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
        return '{"' + '","'.join(values) + '"}'
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return None


def _bound_parts(conn: Connection, stmt, values: Sequence[Any], name: str) -> tuple[Any, list[Any]]:
    """The statement to run for keys given to an expanding `name` parameter, and its value for each bounded part of
    the keys: on PostgreSQL one array per part (as its text where `_array_text` can write it), on SQLite IN-lists.
    """
    if conn.dialect.name != "postgresql":
        return stmt, [list(part) for part in chunked(values)]
    parts = list(chunked(values, ANY_ARRAY_SIZE))
    texts = [_array_text(part) for part in parts]
    if all(text is not None for text in texts):
        return _as_any(stmt, name, as_text=True), texts
    return _as_any(stmt, name), [list(part) for part in parts]


def execute_in(conn: Connection, stmt, values: Iterable[Any], name: str = "values") -> int:
    """Run a write whose expanding `name` parameter takes many keys, over bounded parts; the rows it changed.

    On PostgreSQL the keys go as one array (`= ANY(:name)`), on SQLite as IN-lists.
    """
    stmt, parts = _bound_parts(conn, stmt, list(values), name)
    return sum(int(conn.execute(stmt, {name: part}).rowcount) for part in parts)


def read_in(conn: Connection, stmt, values: Iterable[Any], raw: bool = False) -> list[tuple[Any, ...]]:
    """Rows of a statement with an expanding `values` IN-list parameter, read over bounded parts of the values.

    On PostgreSQL the values go as one array parameter (`= ANY(:values)`) instead of IN-lists.
    `raw` hands back the driver's tuples, skipping SQLAlchemy's per-row result processing (a quarter of a narrow
    read's time): booleans may come as 0/1, and SQLite gives datetimes as text (`utc` parses either).
    """
    rows: list[tuple[Any, ...]] = []
    stmt, parts = _bound_parts(conn, stmt, list(values), "values")
    for part in parts:
        result = conn.execute(stmt, {"values": part})
        if raw:
            rows.extend(result.cursor.fetchall())
            result.close()
        else:
            rows.extend(tuple(row) for row in result)
    return rows


def select_in(conn: Connection, columns: list, key, values: Iterable[Any], *where, raw: bool = False) -> list[tuple]:
    """Rows whose key is one of `values`, IN-list by IN-list; `raw` returns the driver's tuples as they come.

    Raw rows skip SQLAlchemy's per-row result processing (half the read time of a wide 50,000-row read), so
    callers get what the driver gives: 0/1 for booleans and JSON text on SQLite.
    """
    stmt = select(*columns).where(key.in_(bindparam("values", expanding=True)), *where)
    return read_in(conn, stmt, sorted(set(values)), raw=raw)


WAL_SIZE_LIMIT = 64 << 20


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The driver's implicit BEGIN is disabled so that every transaction can start as BEGIN IMMEDIATE below:
    # concurrent writers then queue on busy_timeout instead of failing on a lock upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Takes effect only on a new, empty database (before WAL is on): bulk chunk writes touch fewer, fuller pages,
    # which made a 100k intake about 4% faster than the default 4 KiB.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Commits only append to the WAL; a background thread checkpoints it (WalCheckpointer). A WAL file that a
    # checkpoint emptied is cut back to this size instead of keeping the biggest chunk's size on disk.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    # The default 2 MB page cache makes index maintenance dominate bulk upserts into indexed tables.
    cursor.execute("PRAGMA cache_size=-131072")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


# The least time between two checkpoints of one store (a big commit waits this long at most for its checkpoint).
CHECKPOINT_GAP_SECONDS = 0.05


class WalCheckpointer:
    """Copies committed pages from a SQLite file database's WAL into the database in a background thread.

    SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages, so a big chunk's
    commit also copied the chunk into the database file and synced it: about 1 s of every 100k leads' intake. As
    SQLite's WAL documentation suggests for writers that should not wait, connections turn the automatic checkpoint
    off and this thread runs a PASSIVE checkpoint after commits: it never blocks readers or writers, and SQLite
    releases the GIL while it copies. The last connection to close checkpoints whatever is left, as always.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self._wake = threading.Event()
        self._closed = False
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="leadflow-wal-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self, *_: Any) -> None:
        """Ask for a checkpoint soon: called whenever a connection goes back to the pool, after its commit."""
        if threading.current_thread() is not self._thread:
            self._wake.set()

    def close(self) -> None:
        """Stop the thread after its current checkpoint."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._closed:
            woken = self._wake.wait(timeout=60)
            self._wake.clear()
            engine = self._engine()
            if engine is None or self._closed:
                return
            if woken:
                self._checkpoint(engine)
            del engine
            if woken and not self._closed:
                # Commits that come close together share one checkpoint: a stream of small commits (the API's, one
                # per few leads) would otherwise keep a checkpoint, with its fsync, running all the time.
                time.sleep(CHECKPOINT_GAP_SECONDS)

    def _checkpoint(self, engine: Engine) -> None:
        # A raw pooled connection: a SQLAlchemy Connection would open BEGIN IMMEDIATE and queue behind writers.
        try:
            raw = engine.raw_connection()
        except Exception:  # the database went away (a test dropped it); the next commit asks again
            return
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cursor.fetchall()
            cursor.close()
            self.checkpoints += 1
        except Exception:  # a checkpoint is an optimisation: the WAL keeps every commit until one succeeds
            pass
        finally:
            raw.close()


# A quoted span in a database message is an identifier or a value; only the schema's own names are kept.
_QUOTED = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'")


@functools.cache
def _schema_names() -> frozenset[str]:
    """Every table, column, constraint and index name of the CRM schema: what a message may quote."""
    names: set[str] = set()
    for table in Base.metadata.tables.values():
        names.add(table.name)
        names.update(column.name for column in table.columns)
        names.update(str(c.name) for c in table.constraints if c.name)
        names.update(str(i.name) for i in table.indexes if i.name)
    return frozenset(names)


def _without_values(message: str) -> str:
    """A database message's first line with every quoted value but schema names replaced by "...".

    PostgreSQL's DETAIL and CONTEXT lines repeat keys and payloads ("Key (email)=(...)", "JSON data, line 1: ..."),
    and even first lines quote the offending value ('invalid input syntax for type integer: "..."').
    """
    first = message.strip().split("\n", 1)[0]
    names = _schema_names()
    return _QUOTED.sub(lambda m: m.group(0) if m.group(0)[1:-1] in names else '"..."', first)


def _hide_row_values(context: Any) -> None:
    """handle_error hook: a database error carries no row values, in its text, its pickle or its cause.

    hide_parameters only keeps the parameters out of str(); the wrapped error still holds them (and pickles them,
    as Prefect does with a failed task's exception), and the driver's error, raised as the cause, quotes them.
    """
    if context.statement is None:
        if context.sqlalchemy_exception is not None:
            context.sqlalchemy_exception.params = None
        return  # a failed connect: its message names hosts and ports, which ops need, and no row values
    _scrub(context.original_exception, context.sqlalchemy_exception)


def _scrub(original: BaseException | None, wrapped: Any) -> None:
    """Take row values out of a driver error and of the SQLAlchemy error that wraps it (see `_hide_row_values`)."""
    if wrapped is not None:
        wrapped.params = None
    if isinstance(original, Exception) and original.args and isinstance(original.args[0], str):
        original.args = (_without_values(original.args[0]), *original.args[1:])
        if hasattr(original, "_info"):
            # psycopg keeps the server's full report (DETAIL, CONTEXT) here and pickles it; sqlstate stays on the
            # error's class or was copied onto the instance when it was raised.
            original.sqlstate = getattr(original, "sqlstate", None)
            original._info = None
    if wrapped is not None and wrapped.args and isinstance(original, Exception):
        origin = type(original)
        wrapped.args = (f"({origin.__module__}.{origin.__name__}) {original}", *wrapped.args[1:])


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine whose errors never carry row values (parameters hidden and scrubbed); every engine is made here."""
    engine = create_engine(url, hide_parameters=True, **options)
    event.listen(engine, "handle_error", _hide_row_values)
    return engine


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_MISSING_DATABASE = re.compile(r'database "[^"\n]*" does not exist')


class DatabaseNotReady(Exception):
    """The configured CRM database does not exist or is not migrated to the head revision (one-line message)."""


@functools.cache
def head_revision() -> str:
    """The head revision(s) of the bundled migrations, joined by '+' as Store.revision joins the database's."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return "+".join(sorted(ScriptDirectory.from_config(config).get_heads()))


def database_url(url: str) -> URL:
    """Parse a database URL; a bare `postgresql://` means psycopg 3 (SQLAlchemy 2.0 would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def analyze_statement(tables: Sequence[str]) -> str:
    """The ANALYZE of these tables: of those in PLANNER_COLUMNS their indexed and planner columns, the others whole."""
    parts = []
    for name in sorted(tables):
        table = Base.metadata.tables[name]
        if name not in PLANNER_COLUMNS:
            parts.append(name)
            continue
        keyed = {c.name for index in table.indexes for c in index.columns}
        keyed.update(c.name for c in table.primary_key.columns)
        keyed.update(c.name for u in table.constraints if isinstance(u, UniqueConstraint) for c in u.columns)
        wanted = keyed.union(PLANNER_COLUMNS[name])
        parts.append(f"{name} ({', '.join(c.name for c in table.columns if c.name in wanted)})")
    return "ANALYZE " + ", ".join(parts)


class Store:
    """The CRM database behind one interface; the same calls work on SQLite and PostgreSQL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = database_url(url)
        self.dialect = parsed.get_backend_name()
        options: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps, "future": True}
        if self.dialect == "sqlite":
            options["connect_args"] = {"timeout": 60, "check_same_thread": False}
        else:
            options.update(pool_size=5, max_overflow=5, pool_pre_ping=True)
        self.engine: Engine = make_engine(parsed, **options)
        self.checkpointer: WalCheckpointer | None = None
        self._checked_current = False
        self.copy_min_rows = COPY_MIN_ROWS
        # refresh_statistics: rows of the biggest table at this Store's last ANALYZE, rows added through it since.
        self._statistics_lock = threading.Lock()
        self._analyzed_rows: int | None = None
        self._added_since_analyze = 0
        self._statistics_thread: threading.Thread | None = None
        # Set by a failed ANALYZE (without the lock: the thread that joins it holds that); the next refresh analyzes.
        self._statistics_failed = False
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
            if parsed.database and parsed.database != ":memory:":
                self.checkpointer = WalCheckpointer(self.engine)
                # Not the "commit" event: it fires before the commit, when there is nothing new to copy yet.
                event.listen(self.engine, "checkin", self.checkpointer.nudge)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)})"

    @property
    def insert(self):
        """The dialect's INSERT construct, which knows ON CONFLICT."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn

    def upgrade(self, revision: str = "heads") -> None:
        """Bring the schema up to date with the Alembic migrations."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        file = self.sqlite_file()
        if file is not None:
            # Only here: a mistyped URL for any other command must not leave a folder (or a file) behind.
            file.parent.mkdir(parents=True, exist_ok=True)
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def revision(self) -> str | None:
        """The schema revision(s) the database is at (joined by '+'), or None before the first migration."""
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            heads = sorted(MigrationContext.configure(conn).get_current_heads())
        return "+".join(heads) or None

    def display_url(self) -> str:
        """The database URL as configured, with its password masked: for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def sqlite_file(self) -> Path | None:
        """The file of a SQLite file database (None for PostgreSQL and in-memory SQLite)."""
        database = self.engine.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            return None
        return Path(database)

    def require_current(self) -> None:
        """Refuse a database that does not exist or is not at the migrations' head: raise DatabaseNotReady.

        Every command but `leadflow db upgrade` and the demo calls this first, so a mistyped URL fails with the fix
        instead of quietly starting a new, empty CRM. A SQLite file that does not exist is not created. Once a
        database passed, this Store does not ask again (flows call it through every task's store()).
        """
        if self._checked_current:
            return
        file = self.sqlite_file()
        if file is not None and not file.is_file():
            raise DatabaseNotReady(f"no CRM database at {self.display_url()}; create it with `leadflow db upgrade` "
                                   "(or set LEADFLOW_DATABASE_URL to the CRM you meant)")
        try:
            current = self.revision()
        except DatabaseError as exc:
            # PostgreSQL names a missing database only in the message (the connect error carries no SQLSTATE);
            # anything else (server down, wrong password) stays the error it is, retryable where it is transient.
            if not _MISSING_DATABASE.search(str(getattr(exc, "orig", exc))):
                raise
            message = (f"no CRM database at {self.display_url()}; create the database, then run "
                       "`leadflow db upgrade` (or set LEADFLOW_DATABASE_URL to the CRM you meant)")
            raise DatabaseNotReady(message) from None
        head = head_revision()
        if current is None:
            raise DatabaseNotReady(f"the database at {self.display_url()} holds no CRM schema; create it with "
                                   "`leadflow db upgrade` (or set LEADFLOW_DATABASE_URL to the CRM you meant)")
        if current != head:
            raise DatabaseNotReady(f"the CRM at {self.display_url()} is at revision {current}, not {head}; "
                                   "migrate it with `leadflow db upgrade`")
        self._checked_current = True

    def dispose(self) -> None:
        """Close pooled connections (after a background ANALYZE ends, and stop the WAL checkpoint thread)."""
        self.wait_for_statistics()
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()

    def refresh_statistics(self, tables: Sequence[str], added: int | None = None) -> None:
        """Refresh PostgreSQL's planner statistics of these tables after a bulk load (SQLite plans without them).

        A new CRM, or one where autovacuum is off or has not come round yet, has none: the planner then takes a
        table of a million leads for one row and picks nested loops and index walks that cost seconds per chunk.
        `added`: the rows a bulk load just stored. Then the tables are analyzed only when the rows added through this
        Store since its last ANALYZE exceed the biggest table's rows at that ANALYZE (always the first time): the
        planner scales row counts by the tables' current size itself, and what it needs from the statistics (value
        distributions) changes little until a table has doubled. An import of many chunks analyzes after its first
        chunk and then a few times (1, 2, 4, 8... times the size), not after every chunk. Either way only the tables
        never analyzed or grown by a quarter since are analyzed, and only their planner columns (PLANNER_COLUMNS).

        A table that was never analyzed is analyzed before this returns (the statements that follow must not be
        planned without statistics). Tables that have statistics, only older ones, are analyzed on a connection of
        their own in a background thread, while the caller goes on writing (ANALYZE's lock does not block row
        writes); wait_for_statistics, dispose and the next refresh wait for it (but a refresh of `added` rows too
        few to call for an ANALYZE even then, which goes on without waiting). Its failure is logged, and the next
        refresh looks at the tables again whatever `added` says.
        """
        if self.dialect != "postgresql":
            return
        from sqlalchemy import text

        with self._statistics_lock:
            running = self._statistics_thread
            if (added is not None and running is not None and running.is_alive() and self._analyzed_rows is not None
                    and self._added_since_analyze + added <= self._analyzed_rows):
                # An ANALYZE still runs and these rows would not call for another even by the count before it (the
                # one it notes is no smaller, unless the tables shrank): the chunk goes on without waiting for it.
                # The next call that may analyze joins it first, and finds out then whether it failed.
                self._added_since_analyze += added
                return
            # The last background ANALYZE's row count decides this one, and ANALYZE waits for itself anyway.
            self._join_statistics()
            failed, self._statistics_failed = self._statistics_failed, False
            if added is not None:
                self._added_since_analyze += added
                # After a failed ANALYZE the count since the last one is no guide: the tables are looked at again.
                if (not failed and self._analyzed_rows is not None
                        and self._added_since_analyze <= self._analyzed_rows):
                    return
            self._added_since_analyze = 0
            names = [Base.metadata.tables[t].name for t in tables]
            with self.begin() as conn:
                # Only tables never analyzed or grown by a quarter since: the planner scales row counts by the
                # current size itself, and a backfill's windows (or a big file's chunks) would otherwise ANALYZE
                # every table after each one, waiting on each other's ANALYZE (it locks against itself) for
                # statistics that barely move.
                stale = conn.execute(text(
                    "SELECT c.relname, c.reltuples < 0 FROM pg_class c WHERE c.oid = ANY(CAST(:names AS regclass[])) "
                    "AND (c.reltuples < 0 OR pg_relation_size(c.oid) > 1.25 * c.relpages * "
                    "current_setting('block_size')::bigint)"), {"names": names}).all()
            statement = analyze_statement([name for name, _ in stale]) if stale else None
            if statement is None or any(never for _, never in stale):
                self._analyze(statement, names)
                return
            thread = threading.Thread(target=self._analyze, args=(statement, names, True),
                                      name="leadflow-analyze")
            self._statistics_thread = thread
            thread.start()

    def wait_for_statistics(self) -> None:
        """Wait for this Store's background ANALYZE, if one runs (the end of a flow, tests)."""
        with self._statistics_lock:
            self._join_statistics()

    def _join_statistics(self) -> None:
        thread, self._statistics_thread = self._statistics_thread, None
        if thread is not None:
            thread.join()

    def _analyze(self, statement: str | None, names: Sequence[str], background: bool = False) -> None:
        """Run the ANALYZE (None: none) and note the biggest table's rows for refresh_statistics' next decision."""
        from sqlalchemy import text

        try:
            with self.begin() as conn:
                if statement is not None:
                    conn.exec_driver_sql(statement)
                rows = conn.execute(text("SELECT max(reltuples) FROM pg_class WHERE oid = ANY(CAST(:names AS "
                                         "regclass[]))"), {"names": list(names)}).scalar()
        except Exception as exc:
            self._statistics_failed = True
            if not background:
                raise
            # Statistics only speed plans up: the next refresh tries again. The engine scrubbed row values from the
            # message (and ANALYZE quotes none); SQLSTATE says what happened.
            code = getattr(getattr(exc, "orig", None), "sqlstate", None)
            _log.warning("Background ANALYZE of %s failed (%s, SQLSTATE %s): %s", ", ".join(sorted(names)),
                         type(exc).__name__, code, exc)
            return
        self._analyzed_rows = max(int(rows or 0), 0)

    def on_statements(self, before: Callable[[Connection, str], None],
                      after: Callable[[Connection, str], None]) -> None:
        """Call `before` and `after` around every statement this store sends (for profiling benchmarks)."""
        event.listen(self.engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *rest: before(conn, statement))
        event.listen(self.engine, "after_cursor_execute",
                     lambda conn, cursor, statement, *rest: after(conn, statement))

    def backend_cpu_seconds(self, conn: Connection | None = None) -> dict[int, float]:
        """CPU seconds by pid of the PostgreSQL server processes serving this database (only `conn`'s, if given),
        when the server runs on this machine: for benchmarks on a shared box. Empty on SQLite or a remote server."""
        if self.dialect != "postgresql":
            return {}
        if conn is None:
            with self.engine.connect() as own:
                pids = list(own.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()").scalars())
        else:
            pids = [conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()]
        found = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(pid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    @property
    def overlaps_writes(self) -> bool:
        """Whether two transactions of one run may write at once: PostgreSQL locks rows, SQLite the whole file."""
        return self.dialect == "postgresql"

    def blocks_others(self, conn: Connection) -> bool:
        """Whether another session waits for a lock this connection's transaction holds (PostgreSQL only)."""
        if self.dialect != "postgresql":
            return False
        # pg_locks, not pg_stat_activity: that view is read once per transaction, and a session that connected
        # since would never be seen.
        return bool(conn.exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
        ).scalar_one())

    def table_counts(self) -> dict[str, int]:
        """Row counts of every CRM table, for summaries and tests."""
        with self.engine.connect() as conn:
            return {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in Base.metadata.tables.items()
            }

    def bulk(self, conn: Connection, statement, frame: pd.DataFrame) -> int:
        """Execute a statement once per frame row with bound parameters named like the frame's columns.

        This is the fast path for large batches. On SQLite the statement is compiled once and the rows go straight to
        the driver's executemany, skipping SQLAlchemy's per-row parameter processing (most of the write time). On
        PostgreSQL a frame of `copy_min_rows` or more is COPied into a temporary staging table and the statement runs
        once, set-based, over it (INSERT ... SELECT ... ON CONFLICT, UPDATE ... FROM): see `_staged_statement`.
        Returns the rows the statement changed, as the driver counts them (ON CONFLICT DO NOTHING skips count 0).
        """
        if frame.empty:
            return 0
        if self.dialect == "postgresql" and len(frame) >= self.copy_min_rows:
            direct = _plain_insert_columns(statement, frame)
            if direct is not None:
                return self._copy_into(conn, statement.table, direct, frame)
            staged = _staged_statement(self, statement, frame)
            if staged is not None:
                return self._copy_and_run(conn, *staged, frame)
        compiled = statement.compile(dialect=self.engine.dialect)
        names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        columns = [_bind_values(frame[name], self.dialect) for name in names]
        if compiled.positional:
            params: list[Any] = list(zip(*columns, strict=True))
        else:
            params = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        return int(conn.exec_driver_sql(compiled.string, params).rowcount)

    def _copy_and_run(self, conn: Connection, staging: Table, statement, frame: pd.DataFrame) -> int:
        """COPY the frame into its staging table (created here, dropped at commit) and run the set-based statement."""
        conn.execute(CreateTable(staging))
        self._copy_into(conn, staging, [c.name for c in staging.columns if c.name != STAGING_ROW], frame,
                        numbered=True)
        # SQLAlchemy keeps the driver's row count of UPDATE and DELETE only, unless asked to (this INSERT's added rows).
        return int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount)

    def _copy_into(self, conn: Connection, table: Table, names: Sequence[str], frame: pd.DataFrame,
                   numbered: bool = False) -> int:
        """COPY the frame's columns `names` into the table (`numbered`: a staging table, with the row numbers)."""
        quoted = self.engine.dialect.identifier_preparer.quote
        columns = [*names, STAGING_ROW] if numbered else list(names)
        sql = f"COPY {quoted(table.name)} ({', '.join(quoted(n) for n in columns)}) FROM STDIN"
        import psycopg

        raw = conn.connection.driver_connection
        # The column-wise text is UTF-8 bytes, sent as they are: only a UTF-8 connection may take them unconverted.
        text = _copy_text(frame, table, names, numbered) if raw.info.encoding == "utf-8" else None
        try:
            with raw.cursor() as cursor:
                with cursor.copy(sql) as copy:
                    if text is not None:
                        copy.write(text)
                    else:
                        values = _copy_columns(frame, table, names)
                        rows = zip(*values, range(len(frame)), strict=True) if numbered else zip(*values, strict=True)
                        for row in rows:
                            copy.write_row(row)
                return int(cursor.rowcount)
        except psycopg.Error as exc:
            # The same error, and as scrubbed of row values, as a failed executemany raises through SQLAlchemy.
            error = DBAPIError.instance(sql, None, exc, psycopg.Error, hide_parameters=True,
                                        dialect=self.engine.dialect)
            _scrub(exc, error)
            raise error from exc

    # --- idempotent inserts, leads and events (intake's own statements are in crm/submissions.py) -----------

    def known_keys(self, conn: Connection, table, keys: Iterable[str]) -> set[str]:
        """Which of these idempotency keys the table (submissions, quarantine) already holds."""
        column = table.c.idempotency_key
        stmt = select(column).where(column.in_(bindparam("values", expanding=True)))
        return {row[0] for row in read_in(conn, stmt, keys, raw=True)}

    def _values(self, table, columns: Sequence[str]):
        """An INSERT of these columns, each bound to the parameter of the same name."""
        return self.insert(table).values({name: bindparam(name) for name in columns})

    def _copy_fresh(self, conn: Connection, table: Table, frame: pd.DataFrame) -> bool:
        """COPY rows whose unique keys this transaction found absent straight into their table; whether it did.

        No staging table and no ON CONFLICT arbitration: the INSERT ... SELECT of the staged path sorted the staging
        table to disk and checked every key speculatively. PostgreSQL only, for frames the bulk path would COPY and
        whose INSERT binds frame columns alone (`_plain_insert_columns`). Another run may store one of the keys
        between our look and this write: the COPY then fails on the unique index (waiting for that run's commit as
        an INSERT would) inside a savepoint, which is rolled back, nothing is written and the caller goes on with
        its ON CONFLICT statement, as if this had not been tried. The server logs that unique violation with the key:
        only for tables whose unique keys hold no personal data (submissions' key is a hash; leads' is an email).
        """
        if self.dialect != "postgresql" or frame.empty or len(frame) < self.copy_min_rows:
            return False
        names = _plain_insert_columns(self._values(table, list(frame.columns)), frame)
        if names is None:
            return False
        try:
            with conn.begin_nested():
                self._copy_into(conn, table, names, frame)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            return False
        return True

    def upsert_leads(self, conn: Connection, leads: pd.DataFrame, now: datetime) -> None:
        """Create new leads and merge details into known ones: newer non-empty values win, counters keep the max.

        Always through ON CONFLICT, new leads too: a direct COPY that met a lead another run created meanwhile would
        fail on the email's unique index, and PostgreSQL's server log would then print that address.
        """
        if leads.empty:
            return
        columns = [c.name for c in LEADS.columns if c.name in leads.columns and c.name not in ("created_at",
                                                                                                  "updated_at")]
        frame = leads[columns].assign(created_at=now, updated_at=now)
        stmt = self._values(LEADS, [*columns, "created_at", "updated_at"])
        ex = stmt.excluded
        newer = ex.last_touch_at >= LEADS.c.last_touch_at
        merge: dict[str, Any] = {}
        for name in MERGED_DETAILS:
            merge[name] = case(
                (newer, func.coalesce(ex[name], LEADS.c[name])), else_=func.coalesce(LEADS.c[name], ex[name])
            )
        for name in MAX_COUNTERS:
            merge[name] = case((or_(LEADS.c[name].is_(None), ex[name] > LEADS.c[name]), ex[name]), else_=LEADS.c[name])
        merge["updated_at"] = ex.updated_at
        if "step_mark" in columns:
            # New submissions send a known lead through the steps again; a lead whose earlier submissions still
            # wait for their spam check keeps the time they started waiting (those submissions are judged too).
            merge["step_mark"] = ex.step_mark
            merge["step_marked_at"] = case((LEADS.c.step_mark == ex.step_mark, LEADS.c.step_marked_at),
                                           else_=ex.step_marked_at)
        self.bulk(conn, stmt.on_conflict_do_update(index_elements=["email"], set_=merge), frame)

    def insert_new(self, conn: Connection, table, frame: pd.DataFrame, fresh: bool = False) -> int:
        """Insert rows keyed by idempotency_key, leaving existing keys alone; returns the rows actually added.

        The row count of ON CONFLICT DO NOTHING counts only rows this statement inserted, even while other runs
        insert the same keys. `fresh`: none of the keys was stored when this transaction looked them up, so on
        PostgreSQL the rows are COPied straight into the table (`_copy_fresh`), all of them added; a key another run
        stored since sends them through ON CONFLICT DO NOTHING after all.
        """
        if fresh and self._copy_fresh(conn, table, frame):
            return len(frame)
        stmt = self._values(table, list(frame.columns)).on_conflict_do_nothing(index_elements=["idempotency_key"])
        return self.bulk(conn, stmt, frame)

    def insert_events(self, conn: Connection, events: pd.DataFrame) -> None:
        """Append to the audit log (lead_id, event_type, occurred_at, batch_id, flow_run_id, details)."""
        if events.empty:
            return
        details = [_json_dumps(d) if not isinstance(d, str) else d for d in events["details"].tolist()]
        frame = events.assign(details=details)
        self.bulk(conn, self._values(EVENTS, list(frame.columns)), frame)

    # --- lead details and scores ------------------------------------------------------------------------

    def leads_by_id(self, conn: Connection, ids: Sequence[int], columns: Sequence[str]) -> pd.DataFrame:
        """These columns (plus id) of the leads with these ids, in id order; times as UTC."""
        names = ["id", *(c for c in columns if c != "id")]
        stmt = select(*(LEADS.c[n] for n in names)).where(LEADS.c.id.in_(bindparam("values", expanding=True)))
        # Raw rows, typed here per column: SQLAlchemy's row processing was half of this read.
        rows = read_in(conn, stmt, sorted(set(int(i) for i in ids)), raw=True)
        columns = dict(zip(names, map(list, zip(*rows, strict=True)), strict=True)) if rows else {n: [] for n in names}
        for name in names:
            kind = LEADS.c[name].type
            if isinstance(kind, Boolean):
                # As SQLAlchemy gives them (SQLite stores 0/1): bool, and None where missing.
                columns[name] = [None if v is None else bool(v) for v in columns[name]]
            elif isinstance(kind, JSON) and self.dialect == "sqlite":
                columns[name] = [json.loads(v) if isinstance(v, str) else v for v in columns[name]]
        frame = pd.DataFrame(columns, columns=names)
        for name in names:
            if isinstance(LEADS.c[name].type, DateTime):
                frame[name] = utc(frame[name])
        return frame

    def lead_id_page(self, size: int, after: int = 0) -> list[int]:
        """The next `size` lead ids above `after`, ascending (keyset pagination: memory follows the page size)."""
        stmt = select(LEADS.c.id).where(LEADS.c.id > bindparam("after")).order_by(LEADS.c.id).limit(size)
        with self.begin() as conn:
            return list(conn.execute(stmt, {"after": after}).scalars())

    def lead_id_pages(self, size: int, after: int = 0) -> Iterator[list[int]]:
        """All lead ids in ascending pages of `size`."""
        while page := self.lead_id_page(size, after):
            yield page
            after = page[-1]

    def update_leads(self, conn: Connection, frame: pd.DataFrame, mark: tuple[int, datetime] | None = None,
                     since: Mapping[int, int] | None = None) -> None:
        """Set the frame's columns on the leads with the frame's ids (JSON columns given as dicts or JSON text).

        `mark` (step, time): the same statement moves each of these leads that is at the step right before `step` to
        it, as progress.mark_step would: one row version per lead on PostgreSQL instead of two. `since` (lead id ->
        step): those leads may move from that earlier step or any after it (steps finished in this run whose marks
        were left to this write).
        """
        if frame.empty:
            return
        columns = [c for c in frame.columns if c != "id"]
        out = frame.copy()
        for name in columns:
            if name in {"enrichment_sources"}:
                out[name] = [v if isinstance(v, str) or v is None else _json_dumps(v) for v in out[name].tolist()]
        values: dict[str, Any] = {name: bindparam(name) for name in columns}
        if mark is not None:
            reached, now = int(mark[0]), mark[1]
            # Literal steps: every bound parameter of a bulk statement is a frame column (see `bulk`). SET expressions
            # all read the row as it was, so both see the old mark.
            before = literal_column(str(reached - 1), SmallInteger)
            ids = out["id"].astype("int64")
            lowest = ids.map(since or {}).fillna(reached - 1).astype("int64") if since else None
            if lowest is not None and (lowest < reached - 1).any():
                # Per row: the earliest step the lead may move from (the step before, unless `since` says earlier).
                out[MARKED_FROM] = lowest.astype("int16")
                moves = LEADS.c.step_mark.between(bindparam(MARKED_FROM, type_=SmallInteger), before)
            else:
                moves = LEADS.c.step_mark == before
            values["step_mark"] = case((moves, literal_column(str(reached), SmallInteger)), else_=LEADS.c.step_mark)
            values["step_marked_at"] = case((moves, bindparam(MARKED_AT, type_=LEADS.c.step_marked_at.type)),
                                            else_=LEADS.c.step_marked_at)
            out[MARKED_AT] = now
        stmt = update(LEADS).where(LEADS.c.id == bindparam("_id")).values(values)
        self.bulk(conn, stmt, out.rename(columns={"id": "_id"}))


STAGING_ROW = "lf_row"
# The bound parameter of the time a folded step mark is written (update_leads' `mark`).
MARKED_AT = "_lf_marked_at"
# The bound parameter of the earliest step a folded mark may move from (update_leads' `since`).
MARKED_FROM = "_lf_marked_from"


def _staging_type(values: pd.Series) -> Any:
    """The column type of a staged parameter that the statement leaves untyped, from the frame's values."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return DateTime(timezone=True)
    if pd.api.types.is_bool_dtype(dtype):
        return Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return Float(53)
    present = values.dropna()
    if present.empty:
        return None  # nothing says what it is: executemany lets the server infer it from the statement
    first = present.iloc[0]
    for kind, sql_type in ((bool, Boolean()), (int, BigInteger()), (float, Float(53)),
                           (datetime, DateTime(timezone=True)), (str, Text())):
        if isinstance(first, kind) and all(isinstance(v, kind) for v in present.head(100)):
            return sql_type
    return None


def _equality_keys(criteria: Iterable[Any], table, names: Collection[str]) -> list[str]:
    """Staged parameters that a WHERE compares for equality with a column of the updated table."""
    keys = []
    for criterion in criteria:
        if (isinstance(criterion, BinaryExpression) and criterion.operator is operators.eq
                and isinstance(criterion.right, BindParameter) and criterion.right.key in names
                and getattr(criterion.left, "table", None) is table):
            keys.append(criterion.right.key)
    return keys


def _plain_insert_columns(statement, frame: pd.DataFrame) -> list[str] | None:
    """The columns of an INSERT that only binds frame columns of the same names to them (no ON CONFLICT, no
    RETURNING): such a frame is COPied straight into its table, in frame order as the staged INSERT ... SELECT
    would insert it, without writing and reading back a staging table. None for any other statement.
    """
    from sqlalchemy.sql.dml import Insert

    if not isinstance(statement, Insert) or statement._post_values_clause is not None or statement._returning:
        return None
    values = statement._values
    if not values or statement._multi_values or statement._select_names or not isinstance(statement.table, Table):
        return None
    names = []
    for key, value in values.items():
        name = key if isinstance(key, str) else key.key
        if not isinstance(value, BindParameter) or value.key != name or name not in frame.columns:
            return None
        if name not in statement.table.c:
            return None
        if not isinstance(value.type, NullType | type(statement.table.c[name].type)):
            return None  # a bind of its own type: the INSERT would cast it, a COPY would not
        names.append(name)
    if any(c.default is not None and c.name not in names for c in statement.table.c):
        return None  # the INSERT would fill a client-side default (`{}` details); a COPY would leave it NULL
    return names


def _staged_statement(store: Store, statement, frame: pd.DataFrame) -> tuple[Table, Any] | None:
    """A staging table for the frame's parameters, and the statement rewritten to read them from it; None when the
    statement cannot run set-based with the same outcome as row by row (it then goes through executemany).

    INSERT ... VALUES becomes INSERT ... SELECT from the staging table in frame order (ids are assigned in the same
    order), keeping its ON CONFLICT clause; UPDATE ... WHERE key = :param becomes UPDATE ... FROM the staging table.
    Row by row, a key given twice is applied twice; set-based, an ON CONFLICT DO UPDATE refuses it and an UPDATE
    applies one of them: such frames, and statements without a recognisable key, stay row by row.
    """
    from sqlalchemy.sql.dml import Insert, Update

    compiled = statement.compile(dialect=store.engine.dialect)
    names = [name for name in compiled.binds if name in frame.columns]
    if not names:
        return None
    types = {}
    for name in names:
        kind = compiled.binds[name].type
        types[name] = _staging_type(frame[name]) if isinstance(kind, NullType) else kind
        if types[name] is None:
            return None
    staging = Table(f"lf_stage_{uuid.uuid4().hex[:12]}", MetaData(), *(Column(n, types[n]) for n in names),
                    Column(STAGING_ROW, BigInteger), prefixes=["TEMPORARY"], postgresql_on_commit="DROP")

    def from_staging(element: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in types:
            return staging.c[element.key]
        return None

    if isinstance(statement, Insert):
        values = statement._values
        if not values or statement._multi_values or statement._select_names:
            return None
        columns = [key if isinstance(key, str) else key.key for key in values]
        exprs = [visitors.replacement_traverse(value, {}, from_staging) for value in values.values()]
        rewritten = store.insert(statement.table).from_select(
            columns, select(*exprs).select_from(staging).order_by(staging.c[STAGING_ROW]))
        clause = statement._post_values_clause
        if isinstance(clause, OnConflictDoUpdate):
            targets = [t if isinstance(t, str) else t.key for t in clause.inferred_target_elements or []]
            sources = {c: v.key for c, v in zip(columns, values.values(), strict=True) if isinstance(v, BindParameter)}
            if not targets or any(t not in sources for t in targets):
                return None
            if frame.duplicated([sources[t] for t in targets]).any():
                return None
        rewritten._post_values_clause = clause
    elif isinstance(statement, Update):
        keys = _equality_keys(statement._where_criteria, statement.table, types)
        if not keys or any(frame[k].duplicated().any() for k in keys[:1]):
            return None
        rewritten = visitors.replacement_traverse(statement, {}, from_staging)
    else:
        return None
    left = set(rewritten.compile(dialect=store.engine.dialect).binds) & set(types)
    if left:
        return None  # a parameter the rewrite did not reach (inside an ON CONFLICT clause): row by row
    return staging, rewritten


def _copy_columns(frame: pd.DataFrame, staging: Table, names: Sequence[str]) -> list[list[Any]]:
    """The frame's staged columns as Python values for psycopg's row-by-row COPY (the fallback of `_copy_text`)."""
    columns = []
    for name in names:
        values = _bind_values(frame[name], "postgresql")
        kind = staging.c[name].type
        if isinstance(kind, JSON):
            values = [v if v is None or isinstance(v, str) else _json_dumps(v) for v in values]
        elif isinstance(kind, Integer) and not pd.api.types.is_integer_dtype(frame[name].dtype):
            # A whole number in a float column (one with gaps) is 12.0, which COPY's integer input refuses;
            # rounded as PostgreSQL casts a float parameter to the integer column (half to even).
            values = [round(v) if isinstance(v, float) else v for v in values]
        columns.append(values)
    return columns


# COPY's text format: these characters inside a value are written as backslash escapes (backslash first).
_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _copy_field(values: pd.Series, kind: Any) -> Any:
    """One staged column as COPY text fields (a pyarrow string array, nulls kept), built column-wise; None when
    the column holds values this does not format exactly as psycopg's row-by-row COPY would (then that is used).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        aware = isinstance(dtype, pd.DatetimeTZDtype)
        if not isinstance(kind, DateTime) or (aware and not kind.timezone):
            return None  # a zone given to a column without one: psycopg's dump keeps the wall-clock time
        naive = values.dt.tz_convert("UTC").dt.tz_localize(None) if aware else values
        # Each distinct time is formatted once: most columns hold one stamp for the whole chunk (created_at).
        codes, uniques = pd.factorize(naive.to_numpy(dtype="datetime64[us]"))
        text = np.char.replace(np.datetime_as_string(uniques, unit="us"), "T", " ").astype(object)
        if aware:
            text = text + "+00"  # a naive time stays naive: the server reads both as psycopg's dump would be
        return pa.array(np.append(text, None)[codes], type=pa.large_string())
    if pd.api.types.is_bool_dtype(dtype):
        if not isinstance(kind, Boolean):
            return None
        return pc.if_else(pa.Array.from_pandas(values), "t", "f").cast(pa.large_string())
    if pd.api.types.is_integer_dtype(dtype):
        if not isinstance(kind, Integer | Float):
            return None
        return pc.cast(pc.cast(pa.Array.from_pandas(values), pa.int64()), pa.large_string())
    if pd.api.types.is_float_dtype(dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        present = ~np.isnan(numbers)
        if not np.isfinite(numbers[present]).all():
            return None  # the row-by-row path sends these for the server to store or refuse
        if isinstance(kind, Integer):
            if (np.abs(numbers[present]) >= 2.0**63).any():
                return None  # out of even a bigint's range: the server refuses it on the row-by-row path
            # Half to even, as the row-by-row path rounds (Python's round) and PostgreSQL casts a float.
            whole = pa.array(np.rint(np.where(present, numbers, 0)).astype(np.int64), mask=~present)
            return pc.cast(whole, pa.large_string())
        if not isinstance(kind, Float):
            return None
        # Arrow writes the shortest text that reads back as the same double, as Python's repr does.
        return pc.cast(pa.array(numbers, mask=~present), pa.large_string())
    if not isinstance(kind, JSON | String):
        return None
    if pd.api.types.infer_dtype(values, skipna=True) in {"string", "empty"}:
        # Text as it is; in a JSON column that is JSON text already (raw payloads are serialized when prepared).
        strings = pc.cast(pa.Array.from_pandas(values), pa.large_string())
    elif isinstance(kind, JSON):
        text = [v if v is None or isinstance(v, str) else _json_dumps(v)
                for v in values.to_numpy(dtype=object, na_value=None).tolist()]
        strings = pa.array(text, type=pa.large_string())
    else:
        return None
    found = _text_bytes(strings)
    if not any(char in found for char in (b"\\", b"\t", b"\n", b"\r", b"\x00")):
        return strings  # nothing to escape: most columns
    if b"\x00" in found:
        return None  # psycopg refuses a NUL in text before sending it; the row-by-row path keeps that error
    for char, escaped in _COPY_ESCAPES:
        if char.encode() in found:
            strings = pc.replace_substring(strings, char, escaped)
    return strings


def _text_bytes(strings: Any) -> bytes:
    """The UTF-8 bytes of a large_string array's values, back to back (nulls add none).

    Searched with `in` (memchr) for the characters COPY escapes: several times faster than a regex over each value,
    which was a fifth of the COPY text's time on the submissions' raw payloads.
    """
    if hasattr(strings, "combine_chunks"):
        strings = strings.combine_chunks()
    _, offsets, data = strings.buffers()
    if data is None:
        return b""
    first, last = np.frombuffer(offsets, dtype=np.int64)[[strings.offset, strings.offset + len(strings)]]
    return data.slice(int(first), int(last - first)).to_pybytes()


def _copy_text(frame: pd.DataFrame, staging: Table, names: Sequence[str], numbered: bool = True) -> bytes | None:
    """The whole COPY input of a staged frame (its columns, then the row number unless not `numbered`), built
    column by column.

    psycopg's write_row formats every value of every row in Python: it and the object conversion before it were
    a quarter of a PostgreSQL intake's client time. None when a column needs psycopg's own adaptation.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        fields = []
        for name in names:
            field = _copy_field(frame[name], staging.c[name].type)
            if field is None:
                return None
            fields.append(field)
        tab = pa.scalar("\t", pa.large_string())
        if numbered:
            rows = pa.array([f"{i}\n" for i in range(len(frame))], type=pa.large_string())
            lines = pc.binary_join_element_wise(*fields, rows, tab, null_handling="replace", null_replacement="\\N")
        else:
            joined = pc.binary_join_element_wise(*fields, tab, null_handling="replace", null_replacement="\\N")
            ends = pa.array([""] * len(frame), type=pa.large_string())
            lines = pc.binary_join_element_wise(joined, ends, pa.scalar("\n", pa.large_string()))
        # The lines' character data, back to back, is the COPY input (no line is null: the row number never is).
        return _text_bytes(lines)
    except (pa.ArrowException, UnicodeError, ValueError, TypeError, OverflowError):
        return None  # psycopg's own path then raises (or accepts) exactly as it always did


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def get_store(url: str | None = None) -> Store:
    """The process-wide Store for a database URL (default: LEADFLOW_DATABASE_URL), built once and reused."""
    if url is None:
        from leadflow.config.settings import get_settings

        url = get_settings().database_url_plain()
    with _stores_lock:
        if url not in _stores:
            _stores[url] = Store(url)
        return _stores[url]


def is_transient_db_error(error: BaseException | None) -> bool:
    """Whether a database error is worth retrying: lock, deadlock, serialization or lost connection."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "sqlstate", None)
    if code in {"40001", "40P01", "55P03", "57P01", "08006", "08001", "08003"}:
        return True
    return isinstance(error, OperationalError) and "locked" in str(error.orig).lower()


# PostgreSQL's SQLSTATE classes of a value the database refuses: data exception (too long, out of range, bad
# input syntax) and integrity constraint violation (NOT NULL, CHECK, foreign key, unique).
_REFUSED_VALUE_CLASSES = ("22", "23")


def refused_value_code(error: BaseException) -> str | None:
    """The database's code when an error means a row's value was refused, else None (lock, connection, bug).

    PostgreSQL: the SQLSTATE (`22001` too long, `22003` out of range, `23502` NOT NULL, ...); SQLite: the
    extended result code name (`SQLITE_CONSTRAINT_NOTNULL`, ...); a value the driver cannot encode (a lone
    surrogate) is `unencodable`. Nothing of the value itself.
    """
    import sqlite3

    from sqlalchemy.exc import DBAPIError, StatementError

    if isinstance(error, UnicodeEncodeError):
        return "unencodable"
    if isinstance(error, StatementError) and isinstance(error.orig, UnicodeEncodeError):
        return "unencodable"
    if not isinstance(error, DBAPIError) or is_transient_db_error(error):
        return None
    original = error.orig
    state = getattr(original, "sqlstate", None)
    if isinstance(state, str):
        return state if state[:2] in _REFUSED_VALUE_CLASSES else None
    if isinstance(original, sqlite3.IntegrityError | sqlite3.DataError):
        return getattr(original, "sqlite_errorname", None) or type(original).__name__
    return None
