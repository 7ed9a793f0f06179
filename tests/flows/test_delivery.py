"""Deliver Outbox against a real SMTP server (aiosmtpd) and a real HTTP webhook (Apprise json://), on both databases.

Three tests run the outbox-delivery flow in the Prefect harness (SMTP from settings, the SLA watch, the switch);
the rest call the step, steps.delivery.deliver_outbox, that the flow's task calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from flows.delivery import outbox_delivery
from leadflow.config.settings import get_settings
from leadflow.crm.outbox import UNKNOWN_OUTCOME, outbox_frame, queue_messages
from leadflow.io.senders import PermanentDeliveryError, SmtpSender, message_id
from leadflow.steps.delivery import DeliveryConfig, deliver_outbox
from leadflow.steps.sla import watch_task_slas
from tests.helpers import run_flow

ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    """An aiosmtpd handler that records messages; it can refuse the first tries or answer slowly."""

    def __init__(self, fail_first: int = 0, code: str = "451 4.3.0 try again later", delay: float = 0.0) -> None:
        self.messages: list = []
        self.fail_first = fail_first
        self.code = code
        self.delay = delay
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return self.code
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            return [m["Message-ID"] for m in self.messages]


@pytest.fixture
def smtp_server():
    """Start a real SMTP server on a free port; yields a factory so each test picks its behaviour."""
    controllers = []

    def start(**kwargs) -> tuple[Inbox, str]:
        inbox = Inbox(**kwargs)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return inbox, f"smtp://127.0.0.1:{port}"

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def webhook():
    """A real local HTTP server receiving Apprise json:// posts (and the path each came to); `fail_first` answers
    500 that many times."""
    state = {"posts": [], "paths": [], "fail_first": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if state["fail_first"] > 0:
                state["fail_first"] -= 1
                self.send_response(500)
                self.end_headers()
                return
            state["posts"].append(json.loads(body))
            state["paths"].append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"json://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()


def rows(n: int, kind: str = "auto_response", channel: str = "email", recipient: str = "p{i}@example.com",
         prefix: str = "k") -> pd.DataFrame:
    now = datetime.now(UTC)
    return pd.DataFrame({
        "idempotency_key": [f"{prefix}:{i}" for i in range(n)], "lead_id": pd.array([None] * n, dtype="Int64"),
        "kind": kind, "channel": channel, "recipient": [recipient.format(i=i) for i in range(n)],
        "subject": [f"Subject {i}" for i in range(n)], "body": [f"<p>Body {i} &amp; more</p>" for i in range(n)],
        "status": "pending", "attempts": 0, "created_at": now,
    })


def use(monkeypatch, **env) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"LEADFLOW_{key.upper()}", value)
    get_settings.cache_clear()


def deliver(crm, config: DeliveryConfig, **kwargs):
    """One delivery run of the step, at the wall clock's time."""
    return deliver_outbox(crm, config, now=lambda: datetime.now(UTC), **kwargs)


def test_email_over_smtp_once_each(crm, smtp_server, monkeypatch):
    inbox, url = smtp_server()
    use(monkeypatch, smtp_url=url)
    queue_messages(crm, rows(5))
    result = outbox_delivery()
    assert result["sent"] == 5 and result["outbox"] == {"sent": 5}
    assert sorted(inbox.ids()) == sorted(message_id(f"k:{i}") for i in range(5))
    assert {m["To"] for m in inbox.messages} == {f"p{i}@example.com" for i in range(5)}
    assert deliver(crm, DeliveryConfig(smtp_url=url)).claimed == 0 and len(inbox.messages) == 5


def test_smtp_server_that_fails_first_is_retried_within_the_run(crm, smtp_server):
    inbox, url = smtp_server(fail_first=1)
    queue_messages(crm, rows(2))
    assert deliver(crm, DeliveryConfig(smtp_url=url), sleep=lambda _: None).sent == 2
    frame = outbox_frame(crm).set_index("idempotency_key")
    assert frame.loc["k:0", "attempts"] == 2 and frame.loc["k:1", "attempts"] == 1
    assert sorted(inbox.ids()) == sorted(message_id(f"k:{i}") for i in range(2))


def test_permanent_smtp_rejection_fails_without_retry(crm, smtp_server):
    inbox, url = smtp_server(fail_first=5, code="550 5.1.1 no such user")
    queue_messages(crm, rows(1))
    result = deliver(crm, DeliveryConfig(smtp_url=url))
    row = outbox_frame(crm).iloc[0]
    assert result.failed == 1 and row["status"] == "failed" and row["attempts"] == 1
    assert "550" in row["last_error"] and inbox.fail_first == 4


def test_alert_through_apprise_webhook_that_fails_first(crm, webhook, tmp_path):
    webhook["fail_first"] = 1
    queue_messages(crm, rows(1, kind="rep_alert", channel="apprise", recipient=webhook["url"]))
    result = deliver(crm, DeliveryConfig(outbox_dir=tmp_path / "outbox"), sleep=lambda _: None)
    assert result.sent == 1 and result.by_kind == {"rep_alert": 1}
    assert [p["title"] for p in webhook["posts"]] == ["Subject 0"]
    assert "Body 0" in webhook["posts"][0]["message"]
    assert outbox_frame(crm).iloc[0]["attempts"] == 2


def test_unreachable_webhook_is_retried_later_not_lost(crm, tmp_path):
    queue_messages(crm, rows(1, kind="manager_notice", channel="apprise", recipient="json://127.0.0.1:9/x"))
    config = DeliveryConfig(outbox_dir=tmp_path / "outbox", tries_per_run=2, retry_delays=(0.01,),
                            retry_after=timedelta(minutes=1))
    result = deliver(crm, config)
    row = outbox_frame(crm).iloc[0]
    assert result.retry_later == 1 and row["status"] == "pending" and row["attempts"] == 2
    assert row["next_attempt_at"] > pd.Timestamp.now(tz="UTC") and row["last_error"]
    # Not due yet: the next run leaves it alone; once due it is claimed again.
    assert deliver(crm, config).claimed == 0
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert deliver_outbox(crm, config, now=lambda: later).claimed == 1


def test_eml_files_without_smtp_are_idempotent(crm, tmp_path):
    config = DeliveryConfig(outbox_dir=tmp_path / "outbox")
    queue_messages(crm, rows(3))
    assert deliver(crm, config).sent == 3
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert [f.name for f in files] == ["k_0.eml", "k_1.eml", "k_2.eml"]
    parsed = message_from_bytes(files[0].read_bytes())
    assert parsed["Message-ID"] == message_id("k:0") and parsed["To"] == "p0@example.com"
    assert deliver(crm, config).claimed == 0 and len(list((tmp_path / "outbox").iterdir())) == 3
    # Files need no "send started" mark: a resend would write the same bytes.
    assert outbox_frame(crm)["send_started_at"].isna().all()


class Recorder:
    """A sender that records what it is asked to do; it can refuse a recipient for good."""

    def __init__(self, idempotent: bool = False, refuse: str | None = None) -> None:
        self.idempotent = idempotent
        self.refuse = refuse
        self.calls: list[str] = []

    def open(self) -> None:
        self.calls.append("open")

    def send(self, row) -> None:
        if row["recipient"] == self.refuse:
            raise PermanentDeliveryError("refused")
        self.calls.append(row["idempotency_key"])

    def close(self) -> None:
        self.calls.append("close")


def test_each_row_goes_to_its_channels_sender_opened_and_closed_per_batch(crm):
    queue_messages(crm, pd.concat([rows(3), rows(1, channel="apprise", recipient="json://x", prefix="a"),
                                   rows(1, channel="fax", prefix="f")], ignore_index=True))
    email, alerts = Recorder(refuse="p2@example.com"), Recorder()
    result = deliver(crm, DeliveryConfig(batch_size=3), senders={"email": email, "apprise": alerts})
    assert email.calls == ["open", "k:0", "k:1", "close", "open", "close"]
    assert alerts.calls == ["open", "close", "open", "a:0", "close"]
    assert (result.claimed, result.sent, result.failed) == (5, 3, 2)
    frame = outbox_frame(crm).set_index("idempotency_key")
    assert frame.loc["f:0", "last_error"].startswith("PermanentDeliveryError: unknown channel")
    assert frame.loc["k:2", "status"] == "failed" and frame.loc["k:2", "attempts"] == 1
    # A non-idempotent sender's rows carry the mark that their send began.
    assert frame.loc[["k:0", "a:0"], "send_started_at"].notna().all()


def test_two_runs_at_once_never_send_a_message_twice(crm, smtp_server):
    inbox, url = smtp_server(delay=0.01)
    queue_messages(crm, rows(40))
    config = DeliveryConfig(smtp_url=url, batch_size=5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(deliver(crm, config))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in results) == 40
    assert sorted(inbox.ids()) == sorted(message_id(f"k:{i}") for i in range(40))


CHILD = """
import sys
from datetime import UTC, datetime
sys.path.insert(0, {root!r})
from leadflow.steps.delivery import DeliveryConfig, deliver_outbox
from leadflow.crm.store import get_store
deliver_outbox(get_store(), DeliveryConfig(smtp_url={url!r}, batch_size=50), now=lambda: datetime.now(UTC))
"""


def test_delivery_killed_mid_batch_then_rerun_sends_each_message_at_most_once(crm, smtp_server, monkeypatch):
    inbox, url = smtp_server(delay=0.15)
    queue_messages(crm, rows(12))
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), url=url)], env=env)
    deadline = time.monotonic() + 60
    while len(inbox.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    frame = outbox_frame(crm)
    assert 3 <= len(inbox.messages) < 12, "the child must die mid-batch"
    assert (frame["status"] == "sending").sum() >= 12 - len(inbox.messages) - 1
    received_before = set(inbox.ids())

    # The next run recovers the dead run's claim (lease 0: we know it is dead) and sends the rest.
    result = deliver(crm, DeliveryConfig(smtp_url=url, lease=timedelta(0)))
    frame = outbox_frame(crm).set_index("idempotency_key")
    ids = inbox.ids()
    assert len(ids) == len(set(ids)), "a message was sent twice"
    unknown = frame.index[frame["last_error"].eq(UNKNOWN_OUTCOME).fillna(False)]
    assert len(unknown) <= 1 and result.unknown_outcome == len(unknown)
    for key, row in frame.iterrows():
        if key in unknown:
            # Interrupted after its send began: never resent; it arrived at most once.
            assert row["status"] == "failed" and ids.count(message_id(key)) <= 1
        else:
            assert row["status"] == "sent" and ids.count(message_id(key)) == 1
    assert received_before <= set(ids)
    assert set(frame["status"]) <= {"sent", "failed"}


def _lead_with_tasks(crm, email: str, status: str, due: list[datetime]) -> list[int]:
    """A lead and one open task per due time; returns the task ids."""
    from sqlalchemy import insert

    from leadflow.crm.schema import CrmTask, Lead

    now = datetime.now(UTC)
    with crm.begin() as conn:
        lead_id = conn.execute(insert(Lead).values(
            email=email, first_touch_at=now, first_touch_source="web_form", last_touch_at=now,
            last_touch_source="web_form", status=status, created_at=now, updated_at=now,
        ).returning(Lead.id)).scalar_one()
        return [conn.execute(insert(CrmTask).values(
            idempotency_key=f"qualification:{email}:{i}", lead_id=lead_id, kind="qualification", status="open",
            due_at=at, details={},
        ).returning(CrmTask.id)).scalar_one() for i, at in enumerate(due)]


def test_sla_watch_reports_each_breach_once_and_delivers_it(crm, monkeypatch, tmp_path):
    from sqlalchemy import select

    from leadflow.crm.schema import CrmTask

    use(monkeypatch, outbox_dir=str(tmp_path / "outbox"))
    now = datetime.now(UTC)
    late = _lead_with_tasks(crm, "late@example.com", "new", [now - timedelta(minutes=30), now + timedelta(hours=2)])
    _lead_with_tasks(crm, "lost@example.com", "disqualified", [now - timedelta(hours=1)])
    first = outbox_delivery()
    assert first["sla_breaches_reported"] == 1 and first["sla_notices_queued"] == 1
    notices = outbox_frame(crm)
    notices = notices.loc[notices["kind"] == "manager_notice"]
    assert len(notices) == 1 and notices["status"].tolist() == ["sent"]
    assert "1 task past SLA" in notices["subject"].iloc[0]
    with crm.begin() as conn:
        stamped = dict(conn.execute(select(CrmTask.id, CrmTask.sla_notified_at)).all())
    assert stamped[late[0]] is not None and stamped[late[1]] is None
    # The same breach is never reported again; a new one gets its own notice (the flow's two steps, called directly).
    settings = get_settings()

    def watch():
        return watch_task_slas(crm, None, settings.sender_email, datetime.now(UTC))

    assert watch().breaches == 0
    _lead_with_tasks(crm, "later@example.com", "working", [now - timedelta(minutes=1)])
    assert watch().breaches == 1
    assert deliver(crm, DeliveryConfig(outbox_dir=tmp_path / "outbox")).by_kind == {"manager_notice": 1}
    kinds = outbox_frame(crm)["kind"].tolist()
    assert kinds.count("manager_notice") == 2


def test_sla_watch_can_be_switched_off(crm, monkeypatch, tmp_path):
    use(monkeypatch, outbox_dir=str(tmp_path / "outbox"))
    _lead_with_tasks(crm, "late@example.com", "new", [datetime.now(UTC) - timedelta(minutes=30)])
    result, run_id = run_flow(outbox_delivery, watch_slas=False)
    assert "sla_breaches_reported" not in result and result["claimed"] == 0
    # Nothing to send: the run says so by name and leaves no all-zero summary artifact.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run.id])))
    assert run.name == "outbox-delivery-idle" and artifacts == []


# --- exactly once under overlap: the fencing check and lease renewal ---------------------------------------------


class StallingSmtp(SmtpSender):
    """A real SMTP sender whose first send stalls past the lease: meanwhile a whole second delivery run happens."""

    def __init__(self, url: str, on_first_send) -> None:
        super().__init__(url, "sales@leadflow.example")
        self.on_first_send = on_first_send

    def send(self, row) -> None:
        hook, self.on_first_send = self.on_first_send, None
        if hook:
            hook()
        super().send(row)


def test_a_run_whose_lease_lapsed_mid_send_never_sends_the_rows_taken_over(crm, smtp_server):
    inbox, url = smtp_server()
    queue_messages(crm, rows(8))
    clock = [datetime.now(UTC)]
    config = DeliveryConfig(smtp_url=url, lease=timedelta(minutes=10))
    second = []

    def stall() -> None:
        # The first run hangs in its first send for longer than its lease; another run starts and finishes.
        clock[0] += timedelta(minutes=11)
        second.append(deliver_outbox(crm, config, now=lambda: clock[0]))

    first = deliver_outbox(crm, config, now=lambda: clock[0], senders={"email": StallingSmtp(url, stall)})
    (other,) = second
    # The second run took the 7 unstarted rows over and sent them; the row whose send had begun is not resent.
    assert (other.requeued_stale, other.unknown_outcome, other.sent) == (7, 1, 7)
    # The first run's fence refused the 7 rows it no longer owned; it sent only the row it had confirmed.
    assert (first.sent, first.lost_claims) == (1, 7)
    ids = inbox.ids()
    assert sorted(ids) == sorted(message_id(f"k:{i}") for i in range(8)) and len(ids) == len(set(ids))
    # The slow run's own outcome replaced "unknown": every row is sent, once.
    frame = outbox_frame(crm)
    assert set(frame["status"]) == {"sent"} and (frame["attempts"] == 1).all()


def _run_overlapping(crm, configs: list[DeliveryConfig], started) -> list:
    """Start one delivery run per config in its own thread; each after `started(i)` says so; join them all."""
    results: list = [None] * len(configs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = deliver(crm, configs[i])
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = []
    for i in range(len(configs)):
        deadline = time.monotonic() + 30
        while not started(i) and time.monotonic() < deadline:
            time.sleep(0.005)
        threads.append(threading.Thread(target=run, args=(i,)))
        threads[-1].start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_two_overlapping_runs_with_a_short_lease_send_each_message_exactly_once_over_smtp(crm, smtp_server):
    # Each send (50 ms) outlasts the lease (30 ms): claims lapse all the time and the runs take each other's rows
    # over. The second run starts once the first is sending, with another batch size, so they do not keep step.
    # Whether a pair of runs does take a claim over depends on timing; a pair that kept out of each other's way
    # proves nothing about the fence, so the scenario runs again on fresh messages until one did.
    lease = timedelta(seconds=0.03)
    for attempt in range(3):
        inbox, url = smtp_server(delay=0.05)
        queue_messages(crm, rows(60, prefix=f"a{attempt}"))
        configs = [DeliveryConfig(smtp_url=url, batch_size=12, lease=lease),
                   DeliveryConfig(smtp_url=url, batch_size=5, lease=lease)]
        results = _run_overlapping(crm, configs, lambda i, inbox=inbox: i == 0 or len(inbox.ids()) >= 2)
        ids = inbox.ids()
        assert len(ids) == len(set(ids)), "a message was sent twice"
        assert sorted(ids) == sorted(message_id(f"a{attempt}:{i}") for i in range(60))
        assert sum(r.sent for r in results) == 60
        assert set(outbox_frame(crm)["status"]) == {"sent"}
        if sum(r.requeued_stale + r.unknown_outcome for r in results) > 0:
            break
    else:
        pytest.fail("three pairs of overlapping runs never took a claim over: the fence was not exercised")


def test_two_overlapping_runs_with_a_short_lease_write_each_eml_file_once(crm, tmp_path):
    queue_messages(crm, rows(60))
    folder = tmp_path / "outbox"
    lease = timedelta(milliseconds=5)
    configs = [DeliveryConfig(outbox_dir=folder, batch_size=7, lease=lease),
               DeliveryConfig(outbox_dir=folder, batch_size=4, lease=lease)]
    _run_overlapping(crm, configs, lambda i: True)
    files = sorted(folder.iterdir())
    found = [message_from_bytes(f.read_bytes())["Message-ID"] for f in files]
    # One complete file per message, no temporary file left by two writers of one key.
    assert all(f.suffix == ".eml" and not f.name.startswith(".") for f in files)
    assert sorted(found) == sorted(message_id(f"k:{i}") for i in range(60))
    assert set(outbox_frame(crm)["status"]) == {"sent"}


# --- a sender outage: the breaker, the flow run's end and the ops alert --------------------------------------------


def test_smtp_outage_ends_the_delivery_run_failed_with_the_rest_pending(crm, smtp_server, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    inbox, url = smtp_server(fail_first=1000, code="421 4.3.2 service not available")
    use(monkeypatch, smtp_url=url, delivery_breaker_after="3", ops_alert_urls="json://127.0.0.1:9/ops")
    queue_messages(crm, rows(10))
    state = outbox_delivery(watch_slas=False, return_state=True)
    assert state.is_failed() and "circuit breaker open for email; 10 messages wait" in state.message
    assert inbox.fail_first == 1000 - 3
    frame = outbox_frame(crm).set_index("idempotency_key")
    email = frame.loc[frame["channel"] == "email"]
    assert (email["status"] == "pending").all() and email["attempts"].sum() == 3
    # The on_failure hook queued the ops alert (sent through Apprise by a later run), without any address in it.
    alert = frame.loc[frame["kind"] == "ops_alert"]
    assert len(alert) == 1 and "circuit breaker open for email" in alert["body"].iloc[0]
    assert "@" not in alert["body"].iloc[0]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["outbox-delivery-summary"])))
    latest = max(artifacts, key=lambda a: a.created)
    assert "Delivery is failing" in latest.data and "| breaker_open | email |" in latest.data
