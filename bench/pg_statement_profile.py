"""Where a PostgreSQL intake's time goes, statement by statement: wall and server CPU seconds of each statement.

Usage: python bench/pg_statement_profile.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres [--size 100000]

Runs intake's steps without Prefect (bench/intake_bench.py's core mode) on a scratch database (created, then
dropped) and reports per statement (its text with staging names folded) and the intake step that sent it: calls,
wall seconds and the CPU seconds of the server backend that ran it (read from /proc: a local server only). A COPY
into a staging table is reported as the whole `_copy_and_run` (client-built input, COPY and the statement) beside
the statement alone; a COPY straight into its table (no staging) as `(COPY direct)`, input building included.
Server CPU is the statement's own; the client's share is wall minus server on a quiet box.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def backend_cpu(pid: int) -> float:
    """User and system CPU seconds of one local server process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def intake_step() -> str:
    """The innermost function of leadflow/steps on the stack: which step sent a statement."""
    for frame in reversed(traceback.extract_stack()):
        if "/leadflow/steps/" in frame.filename:
            return frame.name
    return "?"


def folded(sql: str) -> str:
    """A statement's text on one line, its staging table's random name folded, cut to 110 characters."""
    return " ".join(re.sub(r"lf_stage_[0-9a-f]+", "lf_stage", sql).split())[:110]


def profile(path: str, chunk_size: int) -> None:
    """Run the intake with statement hooks and print the table (this process's database is the scratch one)."""
    import intake_bench

    from leadflow.crm.store import Store, get_store

    store = get_store()
    store.upgrade()
    intake_bench.load_reference_firmographics()
    stats: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    started: dict[int, tuple[float, float, int]] = {}

    def add(key: tuple[str, str], wall: float, cpu: float) -> None:
        entry = stats[key]
        entry[0] += 1
        entry[1] += wall
        entry[2] += cpu

    def before(conn, statement: str) -> None:
        pid = conn.connection.driver_connection.info.backend_pid
        started[id(conn)] = (time.perf_counter(), backend_cpu(pid), pid)

    def after(conn, statement: str) -> None:
        wall, cpu, pid = started.pop(id(conn))
        add((intake_step(), folded(statement)), time.perf_counter() - wall, backend_cpu(pid) - cpu)

    store.on_statements(before, after)

    copy_and_run = Store._copy_and_run

    def timed_copy(self, conn, staging, statement, frame):
        pid = conn.connection.driver_connection.info.backend_pid
        wall, cpu = time.perf_counter(), backend_cpu(pid)
        try:
            return copy_and_run(self, conn, staging, statement, frame)
        finally:
            add((intake_step(), "(COPY + statement) " + folded(str(statement))), time.perf_counter() - wall,
                backend_cpu(pid) - cpu)

    Store._copy_and_run = timed_copy
    copy_into = Store._copy_into

    def timed_direct(self, conn, table, names, frame, numbered=False):
        if numbered:  # a staging table's COPY: inside `_copy_and_run`, reported with its statement
            return copy_into(self, conn, table, names, frame, numbered=numbered)
        pid = conn.connection.driver_connection.info.backend_pid
        wall, cpu = time.perf_counter(), backend_cpu(pid)
        try:
            return copy_into(self, conn, table, names, frame, numbered=numbered)
        finally:
            add((intake_step(), folded(f"(COPY direct) {table.name} ({', '.join(names)})")),
                time.perf_counter() - wall, backend_cpu(pid) - cpu)

    Store._copy_into = timed_direct
    cpu_before, server_before = intake_bench.cpu_seconds(), intake_bench.server_cpu_seconds()
    result = intake_bench.run_core(path, chunk_size)
    server = intake_bench.server_cpu_seconds()
    print(f"{result['rows']:,} rows in {result['seconds']:.2f} s; client CPU "
          f"{intake_bench.cpu_seconds() - cpu_before:.2f} s, server CPU "
          f"{sum(t - server_before.get(pid, 0.0) for pid, t in server.items()):.2f} s")
    print("steps (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["steps"].items()))
    print("\n| wall s | server CPU s | calls | step | statement |\n|---:|---:|---:|---|---|")
    for (step, sql), (calls, wall, cpu) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        if wall >= 0.01:
            print(f"| {wall:.2f} | {cpu:.2f} | {calls} | {step} | `{sql}` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", required=True, help="PostgreSQL server URL (a scratch database is made there)")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--tag", default="profile", help="part of the scratch database's name (letters, digits, _)")
    args = parser.parse_args()
    from generate import generate_leads

    from leadflow.crm.backfill import scratch_postgres_database

    path = HERE / "out" / f"leads-{args.size}.csv"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        generate_leads(args.size).to_csv(path, index=False)
    tag = re.sub(r"[^a-z0-9_]", "", args.tag.lower())
    url, drop = scratch_postgres_database(args.pg_url, f"lf_{tag}_{uuid.uuid4().hex[:8]}")
    os.environ["LEADFLOW_DATABASE_URL"] = url
    os.environ.setdefault("LEADFLOW_HASH_KEY", "statement-profile-only-key")
    try:
        profile(str(path), args.chunk_size)
    finally:
        from leadflow.crm.store import get_store

        get_store().dispose()
        drop()


if __name__ == "__main__":
    main()
