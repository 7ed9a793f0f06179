"""Kill real intake processes (SIGKILL) at exact points; the re-run, or `leadflow repair`, leaves the CRM whole.

Each crash point (LEADFLOW_CRASH_AFTER, leadflow/steps/faults.py) kills the process right after a task of the
intake or qualification sequence. The runs are processes forked from one driver that imported everything once
(tests/e2e/crash_driver.py: the flow's sequence over the plain steps), so a chain of kills costs a second or
two per point; one scenario kills the real `leadflow intake` command (Prefect and all) instead. Whatever was
killed where, the next run (or repair) must leave the CRM equal to an uninterrupted run's, table by table:
leads with scores, tiers, owners and statuses, submissions, tasks, outbox keys, accounts, reps' capacity.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from bench.generate import generate_leads, write_leads
from leadflow.crm.schema import Base
from leadflow.crm.store import Store, database_url
from leadflow.steps.intake import INTAKE_STEP_NAMES
from leadflow.steps.qualification import QUALIFICATION_STEP_NAMES

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("LEADFLOW_TEST_PG_URL")
CHUNK = 150  # 300 rows: two chunks, each qualified after it is written
KILLED = -signal.SIGKILL

# Moments of processing (and where a run or a delivery is), not what the CRM knows about a lead.
MOMENTS = frozenset({
    "id", "lead_id", "batch_id", "flow_run_id", "claimed_at", "claim_token", "completed_at", "created_at", "due_at",
    "enriched_at", "finished_at", "flagged_at", "next_attempt_at", "occurred_at", "qualified_at", "received_at",
    "scored_at", "send_started_at", "sent_at", "spam_flagged_at", "started_at", "step_marked_at", "updated_at",
})
# Of an outbox row, its key and addressee: bodies name due times, and a CLI run may already have delivered it.
OUTBOX_COLUMNS = ("idempotency_key", "kind", "channel", "recipient")

INTAKE_POINTS = [f"{name}:1" for name in INTAKE_STEP_NAMES.values()]
QUALIFICATION_POINTS = [f"{name}:1" for name in QUALIFICATION_STEP_NAMES.values()]


def table_rows(url: str) -> dict[str, list[str]]:
    """Every CRM table's rows (sorted, run moments left out; outbox by key), for comparing two CRMs."""
    store = Store(url)
    tables: dict[str, list[str]] = {}
    try:
        with store.engine.connect() as conn:
            # Accounts by name key: PostgreSQL spends sequence numbers on inserts that lose to a conflict (an
            # account a resumed run proposes again), so surrogate ids may differ where the rows do not.
            accounts = dict(conn.execute(text("SELECT id, name_key FROM accounts")).all())
            # Leads by email in the keys that name them (tasks, messages), for the same reason: on PostgreSQL a kill
            # can cut off a chunk's Create Lead Entry that ran beside the chunk before it, and its ids are spent.
            emails = {str(i): e for i, e in conn.execute(text("SELECT id, email FROM leads")).all()}
            for name, table in Base.metadata.tables.items():
                if name in ("intake_batches", "lead_events"):
                    continue
                columns = [c for c in table.columns if (c.name in OUTBOX_COLUMNS if name == "outbox"
                                                        else c.name not in MOMENTS)]
                rows = [dict(r) for r in conn.execute(select(*columns)).mappings()]
                for row in rows:
                    if isinstance(row.get("idempotency_key"), str):
                        # A notice listing several leads is keyed by a digest of their ids: compared by kind only.
                        key = re.sub(r"^(manager_notice:\w+):[0-9a-f]{32}$", r"\1:<digest of lead ids>",
                                     row["idempotency_key"])
                        row["idempotency_key"] = re.sub(r"lead:(\d+)", lambda m: f"lead:{emails.get(m[1], m[1])}", key)
                    if "account_id" in row:
                        row["account_id"] = accounts.get(row["account_id"])
                    if isinstance(row.get("details"), dict) and "account_id" in row["details"]:
                        row["details"] = {**row["details"], "account_id": accounts.get(row["details"]["account_id"])}
                tables[name] = sorted(repr(tuple(row.values())) for row in rows)
            marks = conn.execute(text("SELECT step_mark, count(*) FROM leads GROUP BY step_mark")).all()
    finally:
        store.dispose()
    assert [tuple(m) for m in marks] in ([(5, len(tables["leads"]))], []), f"unfinished leads left: {marks}"
    return tables


def assert_same_crm(url: str, expected: dict[str, list[str]], crashed_runs: int = 0) -> None:
    """The CRM at `url` equals the expected tables, with no row twice (a duplicate would change the list).

    `crashed_runs` real runs were killed: the next run finds each one's batch dead and tells ops once (an
    `ops_alert:<flow run>` outbox row the uninterrupted run does not have).
    """
    got = table_rows(url)
    alerts = [r for r in got["outbox"] if r.startswith("('ops_alert:")]
    assert len(alerts) == crashed_runs, alerts
    got["outbox"] = [r for r in got["outbox"] if r not in alerts]
    for name, rows in expected.items():
        extra, missing = sorted(set(got[name]) - set(rows)), sorted(set(rows) - set(got[name]))
        assert got[name] == rows, (f"{name}: {len(got[name])} rows against {len(rows)} of an uninterrupted run; "
                                   f"first unexpected {extra[:1]}, first missing {missing[:1]}")


class Driver:
    """The forking driver process: runs an intake (or repair) per request, answers with the exit status."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LEADFLOW_CHECK_WORKER": "false"}
        env.pop("LEADFLOW_CRASH_AFTER", None)
        self.process = subprocess.Popen([sys.executable, "-m", "tests.e2e.crash_driver", "serve"], cwd=ROOT, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, what: str, url: str, crash_after: str | None = None) -> int:
        """Intake the file (`what` is its path) or repair (`what` is "repair"), killed after `crash_after`."""
        point = crash_after.replace(" ", "+") if crash_after else "-"
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{what} {CHUNK} {point} {url}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        """Stop the driver."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Databases:
    """Fresh migrated CRMs of one kind, copied from a template migrated once."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder, self.names = kind, folder, []
        if kind == "sqlite":
            self.template = folder / "template.db"
            store = Store(f"sqlite:///{self.template}")
            store.upgrade()
            store.dispose()
        else:
            self.admin = create_engine(database_url(PG_URL), isolation_level="AUTOCOMMIT")
            self.template = f"leadflow_crash_{uuid.uuid4().hex[:8]}"
            self._create(self.template, None)
            store = Store(self.url(self.template))
            store.upgrade()
            store.dispose()

    def url(self, name: str) -> str:
        """The URL of a PostgreSQL database of this server."""
        return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        self.names.append(name)

    def fresh(self) -> str:
        """A new empty CRM's URL."""
        if self.kind == "sqlite":
            target = self.folder / f"crm-{uuid.uuid4().hex[:8]}.db"
            shutil.copyfile(self.template, target)
            return f"sqlite:///{target}"
        name = f"{self.template}_{len(self.names)}"
        self._create(name, self.template)
        return self.url(name)

    def close(self) -> None:
        """Drop the PostgreSQL databases."""
        if self.kind == "postgresql":
            with self.admin.connect() as conn:
                for name in reversed(self.names):
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self.admin.dispose()


@pytest.fixture(scope="module")
def lead_file(tmp_path_factory) -> str:
    """300 messy submissions (repeats across chunks, rejects, spam signals) in one CSV."""
    return str(write_leads(generate_leads(300, seed=11), tmp_path_factory.mktemp("crash") / "leads.csv"))


@pytest.fixture(scope="module")
def driver():
    """One forking driver for the module."""
    process = Driver()
    yield process
    process.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crms(request, tmp_path_factory, driver, lead_file):
    """Fresh CRMs of one database kind, and the tables an uninterrupted run of the file leaves."""
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL tests need LEADFLOW_TEST_PG_URL")
    databases = Databases(request.param, tmp_path_factory.mktemp(f"crash-{request.param}"))
    baseline = databases.fresh()
    assert driver.run(lead_file, baseline) == 0
    yield databases, table_rows(baseline)
    databases.close()


@pytest.mark.slow
@pytest.mark.parametrize("points", [
    pytest.param([*INTAKE_POINTS, "Calculate Lead Score:1"], id="after-every-intake-task"),
    # Every qualification task in two chains of every other task: the same points, in tests that run side by side.
    pytest.param([*QUALIFICATION_POINTS[::2], "Assign Lead Owner:1"], id="after-odd-qualification-tasks"),
    pytest.param([*QUALIFICATION_POINTS[1::2], "Assign Lead Owner:1"], id="after-even-qualification-tasks"),
])
def test_each_rerun_after_a_kill_finishes_exactly_the_missing_work(crms, driver, lead_file, points):
    """A chain of kills, each run resuming what the one before left and being killed one task later; then a run
    that ends: the CRM equals the uninterrupted run's.

    A point counts a step's runs in its own process: a run that resumes the first chunk does not call the steps
    that chunk already finished, so the last point of each chain (`:1` again) is in the second chunk.
    """
    databases, expected = crms
    url = databases.fresh()
    for point in points:
        assert driver.run(lead_file, url, point) == KILLED, point
    assert driver.run(lead_file, url) == 0
    assert_same_crm(url, expected)


@pytest.mark.slow
@pytest.mark.parametrize("point,repair_point", [
    ("Retrieve Lead Details:2", "Assign Lead Owner:1"),
    ("Alert Sales Rep:2", None),
])
def test_repair_alone_finishes_what_a_killed_run_left(crms, driver, lead_file, point, repair_point):
    """Killed in its last chunk (so every row is stored), the run's leads are finished by `leadflow repair`'s step
    alone, even when the repair itself is killed once."""
    databases, expected = crms
    url = databases.fresh()
    assert driver.run(lead_file, url, point) == KILLED
    if repair_point:
        assert driver.run("repair", url, repair_point) == KILLED
    assert driver.run("repair", url) == 0
    assert_same_crm(url, expected)


@pytest.mark.slow
def test_the_real_cli_killed_after_routing_is_finished_by_its_rerun(crms, lead_file, tmp_path):
    """`leadflow intake` itself (Prefect flow, temporary API), SIGKILLed right after Assign Lead Owner of the first
    chunk: its re-run queues the tasks and messages the kill cut off, and nothing twice."""
    databases, expected = crms
    if databases.kind != "sqlite":
        pytest.skip("one real CLI scenario is enough: the plain-steps chains cover both databases")
    url = databases.fresh()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEADFLOW_DATABASE_URL": url, "LEADFLOW_CHECK_WORKER": "false",
           "LEADFLOW_OUTBOX_DIR": str(tmp_path / "outbox"), "PREFECT_HOME": str(tmp_path / "prefect")}
    command = [sys.executable, "-m", "deployments.cli", "intake", lead_file, "--chunk-size", str(CHUNK),
               "--messages", "all"]
    killed = subprocess.run(command, cwd=ROOT, env={**env, "LEADFLOW_CRASH_AFTER": "Assign Lead Owner:1"},
                            capture_output=True, timeout=900)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_same_crm(url, expected, crashed_runs=1)
