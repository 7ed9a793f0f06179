"""lead-intake in inbox mode: claims lead_inbox rows, stores them, marks them; a re-run finds nothing to do."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import func, select

from flows.intake import lead_intake
from leadflow.crm.inbox import INBOX, claim_rows, pending_count, release_claim, submit_lead
from leadflow.crm.schema import IntakeBatch, LeadSubmission, QuarantineRecord
from tests.helpers import run_flow


def test_inbox_rows_become_leads_or_quarantine_and_are_marked(crm):
    submit_lead(crm, {"email": "jane@acme.com", "source": "web_form", "first_name": "Jane"})
    submit_lead(crm, {"Email Address": "bob@beta.io", "Lead Source": "webinar", "submitted_at": "2025-05-01T10:00Z"})
    submit_lead(crm, {"email": "not-an-address", "source": "web_form"})
    summary = lead_intake()
    assert summary["origin"] == "lead_inbox"
    assert (summary["rows_read"], summary["submissions_new"], summary["quarantined"]) == (3, 2, 1)
    assert pending_count(crm) == 0
    with crm.engine.connect() as conn:
        batches = set(conn.execute(select(INBOX.c.batch_id)).scalars())
        sources = sorted(conn.execute(select(LeadSubmission.__table__.c.source)).scalars())
        reasons = conn.execute(select(QuarantineRecord.__table__.c.reason_codes)).scalars().all()
    assert batches == {summary["batch_id"]}
    assert sources == ["web_form", "webinar"]
    assert reasons == ["invalid_email"]
    again = lead_intake()
    assert again["rows_read"] == 0 and again["submissions_new"] == 0


def _artifact_keys(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))
    return sorted(a.key or "" for a in found)


def _run_name(flow_run_id) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).name


def _batches(crm) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(IntakeBatch.__table__)).scalar_one()


def test_an_idle_inbox_run_leaves_no_batch_and_no_artifacts(crm):
    idle, run_id = run_flow(lead_intake)
    assert idle["rows_read"] == 0
    assert _batches(crm) == 0
    assert _artifact_keys(run_id) == []
    assert _run_name(run_id) == "intake-lead_inbox-idle"
    # Rows another run holds are not work for this one either.
    submit_lead(crm, {"email": "jane@acme.com", "source": "web_form"})
    held = claim_rows(crm, 10)
    assert lead_intake()["rows_read"] == 0 and _batches(crm) == 0
    release_claim(crm, held)
    busy, run_id = run_flow(lead_intake)
    assert busy["rows_read"] == 1 and _batches(crm) == 1
    assert "lead-intake-summary" in _artifact_keys(run_id)
    assert _run_name(run_id) == "intake-lead_inbox"


def test_a_lead_posted_while_a_run_works_is_taken_by_that_run(crm, monkeypatch):
    # Its own event-triggered run may have been cancelled by the deployment's concurrency limit meanwhile.
    import tasks.inbox

    claims = []
    claim_rows = tasks.inbox.inbox.claim_rows
    chunk_written = tasks.inbox.InboxReader.chunk_written

    def counting_claim(*args, **kwargs):
        claims.append(claim_rows(*args, **kwargs))
        return claims[-1]

    def written_then_a_lead_arrives(self, batch_id):
        chunk_written(self, batch_id)
        if len(claims) == 1:
            submit_lead(crm, {"email": "late@acme.com", "source": "web_form"})

    monkeypatch.setattr(tasks.inbox.inbox, "claim_rows", counting_claim)
    monkeypatch.setattr(tasks.inbox.InboxReader, "chunk_written", written_then_a_lead_arrives)
    submit_lead(crm, {"email": "jane@acme.com", "source": "web_form"})
    summary = lead_intake()
    assert (summary["rows_read"], summary["submissions_new"], summary["chunks"]) == (2, 2, 2)
    assert pending_count(crm) == 0 and _batches(crm) == 1
    # A partial claim drained the inbox: no claim until its chunk is written, then one more, until one is empty.
    assert [len(c) for c in claims] == [1, 1, 0]
