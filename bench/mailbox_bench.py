"""lead-mailbox's steps over a real IMAP server: fetch, judge and store, then move N messages, timed per phase.

Starts its own Dovecot (tests/mail_server.py; `apt-get install dovecot-imapd`) on a free loopback port, fills a
fresh mailbox with N messages (90% inquiries from distinct senders, 5% auto-replies, 5% list mail) and runs the
steps the flow's tasks call, without Prefect, in batches of --batch (the mailbox_batch_size of one run):

    .venv/bin/python bench/mailbox_bench.py --sizes 200 1000 [--db-url postgresql://.../bench_mailbox]

Without --db-url each size gets a new, migrated SQLite file; a PostgreSQL database is migrated and filled (every
run's Message-IDs are its own), so give it a database of its own and drop it afterwards.
"""

from __future__ import annotations

import argparse
import imaplib
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leadflow.crm.store import Store  # noqa: E402
from leadflow.io.mailbox import MailboxConfig  # noqa: E402
from leadflow.steps import mailbox as steps  # noqa: E402
from tests.mail_server import PASSWORD, start_dovecot, stop_dovecot  # noqa: E402


def message(i: int, run_id: str) -> bytes:
    """The i-th test message: mostly inquiries, some auto-replies and list mail."""
    extra = ""
    if i % 20 == 7:
        extra = "Auto-Submitted: auto-replied\r\n"
    elif i % 20 == 13:
        extra = "List-Id: <news.vendor.example>\r\n"
    return (f"From: Person {i} <person{i}@company{i % 97}.example>\r\nTo: sales@example.test\r\n"
            f"Subject: Question {i}\r\nMessage-ID: <bench-{run_id}-{i}@company.example>\r\n"
            f"Date: Mon, 02 Mar 2026 10:15:00 +0000\r\n{extra}MIME-Version: 1.0\r\n"
            f'Content-Type: text/plain; charset="utf-8"\r\n\r\nWe would like a quote for {i} seats.\r\n').encode()


def run(size: int, batch: int, db_url: str | None, server) -> dict[str, float]:
    """Fill a fresh mailbox with `size` messages and take them all; seconds per phase."""
    user = server.new_user()
    client = imaplib.IMAP4("127.0.0.1", server.port)
    client.login(user, PASSWORD)
    for i in range(size):
        client.append("INBOX", None, None, message(i, user.split("@")[0]))
    client.logout()
    folder = tempfile.mkdtemp(prefix="mailbox-bench-")
    store = Store(db_url or f"sqlite:///{folder}/bench.db")
    store.upgrade()
    config = MailboxConfig(host="127.0.0.1", port=server.port, security="none", user=user, password=PASSWORD)
    own = frozenset({"sales@example.test"})
    phases = {"fetch": 0.0, "store": 0.0, "move": 0.0}
    taken = inquiries = 0
    while True:
        started = time.perf_counter()
        fetched = steps.fetch_messages(config, batch)
        phases["fetch"] += time.perf_counter() - started
        if not fetched.messages:
            break
        started = time.perf_counter()
        take = steps.take_messages(store, fetched.messages, datetime.now(UTC), None, own)
        phases["store"] += time.perf_counter() - started
        started = time.perf_counter()
        steps.mark_messages(store, config, fetched.uidvalidity, take, datetime.now(UTC))
        phases["move"] += time.perf_counter() - started
        taken += take.fetched
        inquiries += take.inquiries
    store.dispose()
    if taken != size:
        raise SystemExit(f"took {taken} of {size} messages")
    return {**phases, "total": sum(phases.values()), "inquiries": inquiries}


def main() -> None:
    """Run the sizes asked for and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--batch", type=int, default=200, help="messages per run (mailbox_batch_size)")
    parser.add_argument("--db-url", default=None, help="a PostgreSQL database of its own (default: SQLite files)")
    args = parser.parse_args()
    server = start_dovecot()
    try:
        print("| messages | fetch s | judge+store s | move s | total s | messages/s | inquiries | peak RSS MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            result = run(size, args.batch, args.db_url, server)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {size:,} | {result['fetch']:.2f} | {result['store']:.2f} | {result['move']:.2f} | "
                  f"{result['total']:.2f} | {size / result['total']:,.0f} | {result['inquiries']:,} | {rss:,.0f} |",
                  flush=True)
    finally:
        stop_dovecot(server)


if __name__ == "__main__":
    main()
