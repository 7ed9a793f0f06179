"""Backfill benchmark: generated two-year lead history in monthly windows, by runner and worker count, beside intake.

Each case runs in a fresh child process on a new, empty CRM database against a throwaway Prefect API, and reports
leads per second, the peak resident memory summed over the child's whole process tree (sampled every 0.2 s: the
flow process, the Prefect test server, Dask's scheduler side and workers, intake's check worker) and the largest
single process. The `intake` runner is the comparison: one lead-intake run (with qualification, replay mode) over
the same file on the same kind of database. Default sizes are small; the issue's run is `--sizes 1000000`.

    .venv/bin/python bench/backfill_bench.py --sizes 100000 --dbs postgresql --runners intake dask --workers 1 2 3
    .venv/bin/python bench/backfill_bench.py --tree /path/to/older/checkout ...   # the same cases on older code
    .venv/bin/python bench/backfill_bench.py --profile bench/out/profiles ...      # py-spy over every process
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

CHILD = """
import json, resource, sys, time
from datetime import UTC, date, datetime
from prefect.testing.utilities import prefect_test_harness
from leadflow.crm.store import get_store
get_store().upgrade()
from leadflow.crm.backfill import ledger_rows
path, runner, work, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with prefect_test_harness(server_startup_timeout=180):
    timeline = {}
    if runner == "intake":
        from flows.intake import lead_intake
        t0 = time.perf_counter()
        result = lead_intake(path=path, qualify=True, replay=True)
        seconds = time.perf_counter() - t0
        rows, windows, steps = result["rows_read"], 1, result["step_seconds"]
    else:
        from flows.backfill import lead_backfill
        t0, wall0 = time.perf_counter(), datetime.now(UTC)
        try:
            result = lead_backfill(path=path, start=date(2024, 1, 1), end=date(2025, 12, 31), window="month",
                                   runner=runner, max_parallel=workers, work_dir=work, recompute_reports=False)
        except Exception:
            # Every failed window's error in full, from the ledger, as the last line the parent reads.
            failed = [r for r in ledger_rows(get_store()) if r["status"] != "completed"]
            print(json.dumps({"failed_windows": [{"window": r["window_id"], "attempts": r["attempts"],
                                                  "error": (r["summary"] or {}).get("error")} for r in failed]}))
            raise
        seconds = time.perf_counter() - t0
        rows, windows = result["rows_read"], result["windows_imported"]
        # Where the time went, summed over the windows (seconds of work, which overlap across windows).
        steps = {}
        ledger = ledger_rows(get_store())
        # When the windows ran, in seconds from the flow's start: the serial phases before and after them, and
        # the seconds the windows kept the parallel slots busy (slot-seconds: the rest is the slots' idle time).
        def since(t):
            # SQLite hands the stored UTC times back without their zone.
            return ((t if t.tzinfo else t.replace(tzinfo=UTC)) - wall0).total_seconds()
        spans = [(since(r["started_at"]), since(r["finished_at"]))
                 for r in ledger if r["started_at"] and r["finished_at"] and r["window_id"] != "undated"]
        if spans:
            first, last = min(s for s, _ in spans), max(e for _, e in spans)
            timeline = {"first_window_start": round(first, 1), "last_window_end": round(last, 1),
                        "after_windows": round(seconds - last, 1),
                        "window_seconds": sorted({(round(s, 1), round(e, 1)) for s, e in spans})}
        for row in ledger:
            for step, spent in ((row["summary"] or {}).get("step_seconds") or {}).items():
                steps[step] = steps.get(step, 0.0) + spent
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
top = dict(sorted(((k, round(v, 1)) for k, v in steps.items()), key=lambda kv: -kv[1])[:16])
print(json.dumps({"seconds": seconds, "rows": rows, "windows": windows, "peak_rss_mb": round(own / 1024),
                  "peak_child_rss_mb": round(kids / 1024), "steps": top,
                  "timeline": timeline}))
"""


class TreeMemory:
    """Samples a process tree in a thread: the peak of its resident memory summed over all processes, and the CPU
    time of the PostgreSQL server processes that serve `database` (the client side's CPU comes from rusage)."""

    def __init__(self, pid: int, database: str | None, every: float = 0.2) -> None:
        import psutil

        self.peak_mb = 0.0
        self.server_cpu: dict[int, float] = {}
        # The client side's CPU by process (pid -> role, seconds), to tell the flow from Dask's and Prefect's own.
        self.tree_cpu: dict[int, tuple[str, float]] = {}
        self._database = database
        self._stop = threading.Event()
        self._root = psutil.Process(pid)
        self._thread = threading.Thread(target=self._sample, args=(every,), daemon=True)
        self._thread.start()

    def _sample(self, every: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for proc in [self._root, *self._root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
                        cpu = proc.cpu_times()
                        role = self.tree_cpu[proc.pid][0] if proc.pid in self.tree_cpu else _role(proc, self._root)
                        self.tree_cpu[proc.pid] = (role, cpu.user + cpu.system)
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, total / 2**20)
            if self._database:
                for proc in psutil.process_iter(["name", "cmdline"]):
                    with contextlib.suppress(psutil.Error, TypeError):
                        # A backend's title: "postgres: 15/main: user database host(port) state".
                        if f" {self._database} " in " ".join(proc.info["cmdline"] or []) + " ":
                            cpu = proc.cpu_times()
                            self.server_cpu[proc.pid] = cpu.user + cpu.system
            self._stop.wait(every)

    def cpu_by_role(self) -> dict[str, float]:
        """The client side's CPU seconds by kind of process (as last sampled: a process's last 0.2 s may be missed)."""
        roles: dict[str, float] = {}
        for role, seconds in self.tree_cpu.values():
            roles[role] = round(roles.get(role, 0.0) + seconds, 1)
        return dict(sorted(roles.items(), key=lambda kv: -kv[1]))

    def stop(self) -> tuple[float, float]:
        """Stop sampling; the peak in MiB and the server's CPU seconds."""
        self._stop.set()
        self._thread.join()
        return round(self.peak_mb), round(sum(self.server_cpu.values()), 1)


def _role(proc, root) -> str:
    """What a process of a case is: the flow itself (with Dask's scheduler and nannies), the Prefect test server,
    a spawned process (Dask workers, intake's check worker), or other."""
    if proc.pid == root.pid:
        return "flow"
    line = " ".join(proc.cmdline())
    if "resource_tracker" in line:
        return "resource tracker"
    if "spawn_main" in line or "forkserver" in line:
        return "spawned"
    if "uvicorn" in line or "prefect" in line:
        return "prefect server"
    return f"other: {line[:60]}"


def _database(kind: str, pg_url: str | None) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="lf-bench-")
        return f"sqlite:///{folder}/crm.db", lambda: None
    from leadflow.crm.backfill import scratch_postgres_database

    return scratch_postgres_database(pg_url, f"lf_bench_backfill_{uuid.uuid4().hex[:8]}")


def _failure_report(stdout: str, stderr: str) -> str:
    """Why a case failed: each failed window's error in full when the backfill got that far, else stderr's tail."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith('{"failed_windows"'):
            failed = json.loads(line)["failed_windows"]
            listed = "\n".join(f"- window {f['window']} (attempts {f['attempts']}): {f['error']}" for f in failed)
            return f"{len(failed)} window(s) failed:\n{listed}\n--- stderr tail ---\n{stderr[-3000:]}"
    return stderr[-6000:]


def run_case(history: Path, size: int, db: str, runner: str, workers: int, pg_url: str | None, tree: Path,
             profile: Path | None) -> dict:
    """One backfill (or the intake comparison) in a child process; its timing and memory."""
    url, drop = _database(db, pg_url)
    env = {**os.environ, "LEADFLOW_DATABASE_URL": url, "PREFECT_HOME": tempfile.mkdtemp(prefix="lf-bench-prefect-"),
           "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", "PYTHONPATH": str(tree)}
    env.pop("PREFECT_API_URL", None)
    # PostgreSQL needs the key of the email hashes set (SQLite makes one beside its file): a throwaway one per case.
    env.setdefault("LEADFLOW_HASH_KEY", uuid.uuid4().hex)
    command = [sys.executable, "-c", CHILD, str(history), runner, tempfile.mkdtemp(), str(workers)]
    if profile is not None:
        # Every process of the case (flow, Dask workers, check worker, test server), folded stacks per process.
        profile.mkdir(parents=True, exist_ok=True)
        out = profile / f"{size}-{db}-{runner}-{workers}.txt"
        command = ["py-spy", "record", "--subprocesses", "--idle", "-r", "20", "-f", "raw", "-o", str(out), "--",
                   *command]
    try:
        with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            child = subprocess.Popen(command, cwd=tree, env=env, stdout=stdout, stderr=stderr, text=True)
            memory = TreeMemory(child.pid, urlsplit(url).path.lstrip("/") if db == "postgresql" else None)
            returncode = child.wait()
            peak_tree, server_cpu = memory.stop()
            by_role = memory.cpu_by_role()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            stdout.seek(0)
            stderr.seek(0)
            out_text, err_text = stdout.read(), stderr.read()
        if returncode != 0:
            raise SystemExit(f"{db}/{runner}/{workers} failed:\n{_failure_report(out_text, err_text)}")
        measured = json.loads(next(ln for ln in reversed(out_text.strip().splitlines()) if ln.startswith("{")))
    finally:
        drop()
    # Every process of the case was waited for by its parent, so its CPU time is in this process's children's.
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    measured.update(size=size, db=db, runner=runner, workers=workers, peak_tree_mb=peak_tree,
                    client_cpu=round(client_cpu, 1), server_cpu=server_cpu, cpu_by_role=by_role,
                    leads_per_second=round(measured["rows"] / measured["seconds"]))
    return measured


def history_file(size: int) -> Path:
    """The generated two-year history of `size` rows, made once and kept in bench/out."""
    path = ROOT / "bench" / "out" / f"history-{size}.csv"
    if not path.exists():
        from generate import generate_leads

        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        generate_leads(size, start="2024-01-01", end="2025-12-31").to_csv(tmp, index=False)
        os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Generate the history once per size, then time every database x runner x worker-count case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    parser.add_argument("--dbs", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--runners", nargs="+", default=["threads", "dask"], choices=["intake", "threads", "dask"],
                        help="intake: one lead-intake run (with qualification, replay) over the whole file")
    parser.add_argument("--workers", type=int, nargs="+", default=[2],
                        help="max_parallel: threads or Dask worker processes (ignored by intake)")
    parser.add_argument("--pg-url", default=os.environ.get("LEADFLOW_TEST_PG_URL"),
                        help="PostgreSQL server URL; each case gets a scratch database (default LEADFLOW_TEST_PG_URL)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the leadflow checkout whose code runs the cases")
    parser.add_argument("--profile", type=Path, default=None, help="folder for py-spy folded stacks of each case")
    args = parser.parse_args(argv)
    dbs = [d for d in args.dbs if d == "sqlite" or args.pg_url]

    print(f"<!-- tree {args.tree.resolve()}, load average at start {os.getloadavg()[0]:.1f} -->")
    print("| leads | database | runner | workers | windows | seconds | leads/s | CPU s client + server "
          "| leads per CPU s | peak RSS, all processes (MB) | peak RSS main (MB) | largest child (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        history = history_file(size)
        for db in dbs:
            for runner in args.runners:
                for workers in ([1] if runner == "intake" else args.workers):
                    started_load = os.getloadavg()[0]
                    r = run_case(history, size, db, runner, workers, args.pg_url, args.tree.resolve(), args.profile)
                    print(f"| {size:,} | {db} | {runner} | {'-' if runner == 'intake' else workers} | {r['windows']} "
                          f"| {r['seconds']:.1f} | {r['leads_per_second']:,} "
                          f"| {r['client_cpu']:,} + {r['server_cpu']:,} "
                          f"| {r['rows'] / max(r['client_cpu'] + r['server_cpu'], 0.1):,.0f} | {r['peak_tree_mb']:,} "
                          f"| {r['peak_rss_mb']:,} | {r['peak_child_rss_mb']:,} |", flush=True)
                    print(f"<!-- load {started_load:.1f} -> {os.getloadavg()[0]:.1f}; step seconds (summed over "
                          f"windows): {r['steps']} -->", flush=True)
                    print(f"<!-- client CPU s by process (sampled): {r['cpu_by_role']} -->", flush=True)
                    if r.get("timeline"):
                        print(f"<!-- timeline (s from the flow's start): {r['timeline']} -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
