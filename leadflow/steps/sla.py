"""The SLA watch: tell the sales manager, once per breach, about open tasks whose SLA due time has passed.

Qualification gives every task a due time (P1 within 5 business minutes, ...). A task breaches its SLA later,
when nobody is running qualification, so the outbox-delivery run (on queued messages, and every 10 minutes) looks
for breaches: open tasks of open leads past `due_at` that no notice has named yet. They go into one manager notice
(an outbox row keyed by the tasks it names), and the same transaction stamps `crm_tasks.sla_notified_at`, so a
breach is reported exactly once however often the watch runs, and a crash leaves nothing half done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadflow.crm import outbox, tasks
from leadflow.crm.store import Store
from leadflow.domain import messages


@dataclass
class SlaWatchResult:
    """What one SLA watch found and queued."""

    breaches: int = 0
    notices: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counts for summaries."""
        return {"sla_breaches_reported": self.breaches, "sla_notices_queued": self.notices}


def watch_task_slas(store: Store, manager_urls: str | None, sales_inbox: str, now: datetime) -> SlaWatchResult:
    """Queue one manager notice naming the tasks newly past their SLA and mark them as reported.

    Only whether `manager_urls` is set matters: the notice names the `manager` channel, whose URLs are resolved
    when it is sent (never stored); without them it is emailed to `sales_inbox`.
    """
    result = SlaWatchResult()
    with store.begin() as conn:
        breaches = tasks.sla_breaches(conn, now)
        if breaches.empty:
            return result
        notice = messages.sla_risk_notice(breaches, bool(manager_urls), sales_inbox, now)
        outbox.queue(conn, store, notice)
        tasks.mark_sla_notified(conn, breaches["id"].astype(int).tolist(), now)
    result.breaches = len(breaches)
    result.notices = len(notice)
    return result
