"""The lead-intake sequence with qualification per chunk over the plain steps, as a process a crash test kills.

`python -m tests.e2e.crash_driver FILE CHUNK_SIZE` does what `leadflow intake FILE --chunk-size N` does (batch
row, the intake steps chunk by chunk, lead qualification of each chunk's leads, no delivery), without starting
a Prefect API: each run costs a second instead of several, so the crash test can stop it at many points.
LEADFLOW_CRASH_AFTER (leadflow/steps/faults.py) picks the point; the CRM is LEADFLOW_DATABASE_URL's.

`serve` instead reads "FILE CHUNK_SIZE CRASH_POINT DATABASE_URL" lines on stdin and runs each in a forked child
(imports paid once), printing the child's exit status (negative: the signal that ended it); a FILE of `repair`
runs `leadflow repair`'s step instead.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, datetime


def run(path: str, chunk_size: int) -> dict:
    """One intake of `path` with qualification per chunk, over the plain steps of the configured CRM.

    Messages for every lead (`--messages all`): the generated leads are history, and the auto-responses and rep
    alerts a kill cuts off are what the test must see queued once.
    """
    from leadflow.config.settings import get_settings
    from leadflow.crm import submissions
    from leadflow.crm.store import get_store
    from leadflow.domain.qualification import load_qualification_policy
    from leadflow.domain.summary import IntakeSummary, QualificationSummary
    from leadflow.io.sources import iter_lead_chunks, read_ahead
    from leadflow.steps.intake import intake_chunks, overlap_chunks, plain_steps, plan_intake
    from leadflow.steps.qualification import local_steps, qualify

    settings = get_settings()
    store = get_store()
    policy = load_qualification_policy("qualification")
    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=path)
    plan = plan_intake(path, None, None)
    submissions.start_batch(store, summary.batch_id, path, None, None, datetime.now(UTC))
    qualification = local_steps(store, sales_inbox=settings.sender_email)

    def after_chunk(lead_ids: list[int]) -> None:
        if lead_ids:
            summary.add_qualification(qualify(qualification, lead_ids, policy,
                                              QualificationSummary(policy_version=policy.version), replay=False,
                                              timezone=settings.timezone, clock=lambda: datetime.now(UTC),
                                              chunk_size=settings.chunk_size, messages="all").as_dict())

    chunks = read_ahead(iter_lead_chunks(plan.lead_file, chunk_size))
    # On PostgreSQL chunk N+1's entries are written beside chunk N's later steps, as `leadflow intake` writes them.
    intake_chunks(plain_steps(store), chunks, plan, summary, after_chunk=after_chunk, overlap=overlap_chunks(store))
    submissions.finish_batch(store, summary.batch_id, "completed", summary.as_dict(), datetime.now(UTC))
    return summary.as_dict()


def repair() -> dict:
    """What `leadflow repair --grace-minutes 0` does, in this process (messages for every lead, as `run`)."""
    from tasks.repair import run_repair

    return run_repair(datetime.now(UTC), grace_minutes=0, messages="all").as_dict()


def serve() -> None:
    """Run one intake per stdin line in a forked child, after importing everything once here."""
    import leadflow.steps.intake
    import leadflow.steps.qualification
    import leadflow.steps.repair  # noqa: F401
    from data_checks import runner

    # The GX context costs seconds to build; built here once, every forked child inherits it instead of paying.
    runner.gx_context()

    for line in sys.stdin:
        path, chunk, point, url = line.split()
        pid = os.fork()
        if pid == 0:
            from leadflow.config.settings import get_settings

            os.environ["LEADFLOW_DATABASE_URL"] = url
            get_settings.cache_clear()
            if point != "-":
                os.environ["LEADFLOW_CRASH_AFTER"] = point.replace("+", " ")
            try:
                if path == "repair":
                    repair()
                else:
                    run(path, int(chunk))
            except BaseException:
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(code, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        run(sys.argv[1], int(sys.argv[2]))
