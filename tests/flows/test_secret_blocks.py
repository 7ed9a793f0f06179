"""Settings from Prefect Secret blocks: `prefect-secret://<block>` values (alert URLs, a rep's alert_url, the SMTP URL,
the hash key, the enrichment key) are read from real blocks saved to the test API at use time; none of the secrets
reaches a table, a log record (Python's or the Prefect API's), an artifact or a file."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from sqlalchemy import select

from flows.delivery import outbox_delivery
from leadflow.config.settings import SecretReferenceError, Settings, get_settings, secret_value
from leadflow.crm import people, reference
from leadflow.crm.outbox import outbox_frame
from leadflow.crm.schema import Lead
from leadflow.domain.privacy import keyed_hash
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import QualificationSummary
from leadflow.io.enrichment import HttpProvider
from leadflow.steps.delivery import queue_ops_alert
from leadflow.steps.people import erase_person
from leadflow.steps.qualification import local_steps, qualify
from tests.crm.test_no_secrets import COLD, HOT, NOW, leaks, seed
from tests.flows.test_delivery import Inbox, webhook  # noqa: F401  (the local webhook fixture)

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

TOKENS = {"manager": "mgr-blk-5e1d90aa", "ops": "ops-blk-0c7731fe", "rep": "rep-blk-9a22c4d1",
          "smtp": "smtp-blk-3b6e11f0", "hash": "hash-blk-71c0e5d2-0123456789abcdef", "enrich": "api-blk-44f2a8c9"}


@pytest.fixture
def smtp_with_login():
    """A real SMTP server that requires this login (plain AUTH without TLS, on loopback only)."""
    inbox = Inbox()

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == TOKENS["smtp"].encode()
        return AuthResult(success=ok)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    yield inbox, f"smtp://leadflow:{TOKENS['smtp']}@127.0.0.1:{port}"
    controller.stop()


def _save(name: str, value: str) -> str:
    Secret(value=value).save(name, overwrite=True, _sync=True)
    return f"prefect-secret://{name}"


# Secrets do not depend on the database: SQLite only (tests/crm/test_no_secrets.py covers both for alert URLs).
@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_secrets_come_from_blocks_at_use_time_and_never_land_anywhere(crm, webhook, smtp_with_login,  # noqa: F811
                                                                     tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="leadflow")
    caplog.set_level(logging.INFO)
    for name in ("prefect", "apprise"):
        caplog.set_level(logging.DEBUG, logger=name)
    inbox, smtp_url = smtp_with_login
    urls = {name: f"{webhook['url']}/{TOKENS[name]}" for name in ("manager", "ops", "rep")}
    env = {"MANAGER_ALERT_URLS": _save("lf-manager-alerts", urls["manager"]),
           "OPS_ALERT_URLS": _save("lf-ops-alerts", urls["ops"]),
           "SMTP_URL": _save("lf-smtp", smtp_url), "HASH_KEY": _save("lf-hash-key", TOKENS["hash"]),
           "ENRICHMENT_API_KEY": _save("lf-enrichment", TOKENS["enrich"]),
           "OUTBOX_DIR": str(tmp_path / "outbox"), "REPORT_DIR": str(tmp_path / "reports")}
    for key, value in env.items():
        monkeypatch.setenv(f"LEADFLOW_{key}", value)
    get_settings.cache_clear()
    # The rep's alert_url references a block instead of holding the URL.
    reps = pd.read_csv(reference.DATA_DIR / "sales_reps.csv", dtype=str, keep_default_na=False)
    reps.loc[reps["territories"].str.contains("US"), "alert_url"] = _save("lf-rep-us", urls["rep"])
    reps.to_csv(tmp_path / "reps.csv", index=False)
    reference.load_sales_reps(crm, tmp_path / "reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")

    ids = seed(crm, [{**HOT, "email_opt_in": True}, COLD])
    policy = load_qualification_policy()
    manager = get_settings().manager_alert_urls.get_secret_value()  # what tasks/qualification.py passes
    qualify(local_steps(crm, manager_urls=manager), ids, policy,
            QualificationSummary(replay=False, policy_version=policy.version), replay=False, timezone="UTC",
            clock=lambda: NOW, chunk_size=1000)
    queue_ops_alert("lead-intake", "brave-otter", "3f2b0c1e-0000-4000-8000-000000000002", "Failed", "boom",
                    store=crm)

    result = outbox_delivery(watch_slas=False)
    assert result["failed"] == result["retry_later"] == 0, outbox_frame(crm)[["kind", "last_error"]]
    arrived = Counter(path.rsplit("/", 1)[-1] for path in webhook["paths"])
    assert arrived == {TOKENS["manager"]: 1, TOKENS["ops"]: 1, TOKENS["rep"]: 1}
    assert len(inbox.messages) == result["by_kind"]["auto_response"] > 0  # over SMTP, logged in with the block

    # A rotated secret applies to the next send: nothing held the old value.
    Secret(value=f"{webhook['url']}/rotated-{TOKENS['ops']}").save("lf-ops-alerts", overwrite=True, _sync=True)
    queue_ops_alert("lead-intake", "calm-heron", "3f2b0c1e-0000-4000-8000-000000000003", "Crashed", None, store=crm)
    outbox_delivery(watch_slas=False)
    assert webhook["paths"][-1].endswith(f"rotated-{TOKENS['ops']}")

    # The hash key and the enrichment key are read from their blocks where they are used.
    settings = get_settings()
    erase_person(crm, COLD["email"], hash_key=secret_value(settings.hash_key), outbox_dir=settings.outbox_dir)
    with crm.engine.connect() as conn:
        assert people.erasures(conn, keyed_hash(COLD["email"], TOKENS["hash"]))
        assert conn.execute(select(Lead.id).where(Lead.email == COLD["email"])).all() == []
    provider = HttpProvider(Settings(enrichment_provider="http", enrichment_url="http://127.0.0.1:9/x"))
    assert provider.client.headers["Authorization"] == f"Bearer {TOKENS['enrich']}"
    provider.client.close()

    with get_client(sync_client=True) as client:
        artifacts = "\n".join(repr(a.data) + repr(a.description) for a in client.read_artifacts())
        api_logs = "\n".join(log.message for log in client.read_logs())
    assert "Outbox" in artifacts and "Outbox: " in caplog.text  # the run's task log lines were captured
    secrets = list(TOKENS.values())
    assert [t for t in secrets if t in artifacts or t in api_logs] == []
    assert leaks(crm, tmp_path, caplog.text, secrets, skip_files=(tmp_path / "reps.csv",)) == []


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_a_missing_block_is_named_and_its_rows_wait_for_a_later_run(crm, monkeypatch):
    monkeypatch.setenv("LEADFLOW_OPS_ALERT_URLS", "prefect-secret://lf-no-such-block")
    get_settings.cache_clear()
    with pytest.raises(SecretReferenceError, match="'lf-no-such-block'"):
        secret_value(get_settings().ops_alert_urls)
    queue_ops_alert("lead-intake", "lost-lynx", "3f2b0c1e-0000-4000-8000-000000000004", "Failed", None, store=crm)
    outbox_delivery(watch_slas=False)
    row = outbox_frame(crm).iloc[0]
    assert row["status"] == "pending" and "Secret block 'lf-no-such-block'" in row["last_error"]
    assert datetime.now(UTC) < pd.Timestamp(row["next_attempt_at"]).to_pydatetime()
