"""The delivery circuit breaker against real refusing servers: a local SMTP server answering 421, a closed port,
an unreachable Apprise webhook. Outages are counted in tries, never timed."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from leadflow.crm.outbox import outbox_frame, queue_messages
from leadflow.steps.delivery import DeliveryConfig, deliver_outbox


class Refusing:
    """An aiosmtpd handler that answers DATA with `code` for its first `refuse` messages, then accepts."""

    def __init__(self, refuse: int, code: str = "421 4.3.2 service not available") -> None:
        self.refuse = refuse
        self.code = code
        self.tries = 0
        self.accepted = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.tries += 1
            if self.tries <= self.refuse:
                return self.code
            self.accepted += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    """Start a real local SMTP server with a Refusing handler; yields a factory."""
    controllers = []

    def start(**kwargs) -> tuple[Refusing, str]:
        handler = Refusing(**kwargs)
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return handler, f"smtp://127.0.0.1:{port}"

    yield start
    for controller in controllers:
        controller.stop()


def rows(n: int, channel: str = "email", recipient: str = "p{i}@example.com", prefix: str = "k") -> pd.DataFrame:
    now = datetime.now(UTC)
    return pd.DataFrame({
        "idempotency_key": [f"{prefix}:{i}" for i in range(n)], "lead_id": pd.array([None] * n, dtype="Int64"),
        "kind": "auto_response", "channel": channel, "recipient": [recipient.format(i=i) for i in range(n)],
        "subject": [f"Subject {i}" for i in range(n)], "body": [f"<p>Body {i}</p>" for i in range(n)],
        "status": "pending", "attempts": 0, "created_at": now,
    })


def deliver(crm, config: DeliveryConfig, **kwargs):
    sleeps: list[float] = []
    result = deliver_outbox(crm, config, now=lambda: datetime.now(UTC), sleep=sleeps.append, **kwargs)
    return result, sleeps


def test_a_server_answering_421_opens_the_breaker_after_k_tries_and_the_rest_stay_pending(crm, smtp):
    server, url = smtp(refuse=1000)
    queue_messages(crm, rows(20))
    result, sleeps = deliver(crm, DeliveryConfig(smtp_url=url, batch_size=4, breaker_after=5))
    # 421 is "unavailable": no in-run retry of a message, so five messages cost five tries, no waiting.
    assert server.tries == 5 and sleeps == []
    assert result.breaker_open == ["email"] and result.sent == 0 and result.failed == 0
    # Batch 1 (4 rows) and the first row of batch 2 were tried; batch 2's other 3 rows were given back; the
    # remaining 12 rows were never claimed (the run stops claiming the channel).
    assert (result.claimed, result.retry_later, result.left_pending) == (8, 5, 3)
    frame = outbox_frame(crm).set_index("idempotency_key")
    assert set(frame["status"]) == {"pending"}
    tried = frame.loc[[f"k:{i}" for i in range(5)]]
    untried = frame.drop(tried.index)
    assert tried["attempts"].tolist() == [1] * 5 and tried["next_attempt_at"].notna().all()
    assert tried["last_error"].str.startswith("ChannelUnavailableError: SMTP 421").all()
    # Not failed, no attempt counted, due at once for the next run.
    assert (untried["attempts"] == 0).all()
    assert untried[["next_attempt_at", "last_error", "claim_token"]].isna().all().all()
    assert not tried["last_error"].str.contains("@").any()


def test_a_closed_port_opens_the_breaker_after_k_connection_attempts(crm):
    queue_messages(crm, rows(10))
    config = DeliveryConfig(smtp_url=f"smtp://127.0.0.1:{_free_port()}", breaker_after=3)
    result, sleeps = deliver(crm, config)
    frame = outbox_frame(crm)
    assert result.breaker_open == ["email"] and sleeps == []
    assert frame["attempts"].sum() == 3 and (frame["status"] == "pending").all()
    assert (result.retry_later, result.left_pending) == (3, 7)
    assert frame["last_error"].dropna().str.contains("ConnectionRefusedError").all()


def test_only_consecutive_failures_count(crm, smtp):
    server, url = smtp(refuse=4)
    queue_messages(crm, rows(10))
    result, _ = deliver(crm, DeliveryConfig(smtp_url=url, breaker_after=5))
    assert result.breaker_open == [] and (result.sent, result.retry_later) == (6, 4)
    assert server.tries == 10 and server.accepted == 6


def test_other_channels_keep_going_when_one_breaker_opens(crm, tmp_path):
    # Apprise to a closed port: a plain transient error, retried in the run with its delays; the retries count too.
    webhook = f"json://127.0.0.1:{_free_port()}/hook"
    queue_messages(crm, pd.concat([rows(6, channel="apprise", recipient=webhook, prefix="a"), rows(6)],
                                  ignore_index=True))
    config = DeliveryConfig(outbox_dir=tmp_path / "outbox", breaker_after=5, tries_per_run=3)
    result, sleeps = deliver(crm, config)
    frame = outbox_frame(crm).set_index("idempotency_key")
    alerts = frame.loc[[f"a:{i}" for i in range(6)]]
    # Two alerts were tried: 3 tries, then 2 tries when the breaker opened; in-run waits only between those tries.
    assert alerts["attempts"].tolist() == [3, 2, 0, 0, 0, 0] and len(sleeps) == 3
    assert result.breaker_open == ["apprise"] and (alerts["status"] == "pending").all()
    # Email (as .eml files) was delivered all the same.
    assert (frame.loc[[f"k:{i}" for i in range(6)], "status"] == "sent").all()
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 6 and result.sent == 6
