"""`leadflow api` under load: sustained POSTs per second and latency percentiles with keep-alive connections.

Starts `leadflow api` (the real command, one uvicorn worker unless --workers) against a CRM (a new SQLite file,
or --db-url), creates a key, then posts leads over a few keep-alive connections with httpx.AsyncClient:
open loop at --rate requests per second for --seconds (latency measured from each request's scheduled time, so
a server that falls behind shows it), or closed loop (--rate 0: as fast as the connections go). Rate limits are
off for the run; events are not emitted (no Prefect API), so this measures the HTTP path and the inbox commit.

    .venv/bin/python bench/api_bench.py --rate 500 --seconds 20
    .venv/bin/python bench/api_bench.py --rate 0 --seconds 20 --connections 8
    .venv/bin/python bench/api_bench.py --db-url postgresql://postgres@127.0.0.1:5432/bench_api --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def _load(url: str, token: str, rate: float, seconds: float, connections: int) -> tuple[list[float], int, float]:
    """Post leads for `seconds`; returns (latencies in seconds, failed requests, wall seconds)."""
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    failed = 0
    counter = iter(range(10**9))
    # No pool timeout: requests a falling-behind server cannot take yet wait, and their latency shows it.
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(30, pool=None),
                                 headers={"X-API-Key": token}) as client:
        # Warm the connections (and the server's first-request paths) before measuring.
        await asyncio.gather(*(client.post("/v1/leads", json={"email": f"warm{i}@bench.example"})
                               for i in range(connections)))

        async def post(scheduled: float) -> None:
            nonlocal failed
            n = next(counter)
            try:
                answer = await client.post("/v1/leads", json={
                    "email": f"lead{n}@company{n % 997}.example", "first_name": "Pat", "source": "web_form",
                    "company": f"Company {n % 997}", "message": "We would like a demo."})
                failed += answer.status_code != 202
            except httpx.HTTPError:
                failed += 1
            latencies.append(time.perf_counter() - scheduled)

        started = time.perf_counter()
        end = started + seconds
        if rate > 0:
            pending: set[asyncio.Task] = set()
            interval, k = 1.0 / rate, 0
            while (due := started + k * interval) < end:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(post(due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                k += 1
            await asyncio.gather(*pending)
        else:
            async def worker() -> None:
                while time.perf_counter() < end:
                    await post(time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.perf_counter() - started
    return latencies, failed, wall


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _pythonpath() -> str:
    """This checkout first, then whatever PYTHONPATH the caller set (so a compared checkout's code is served)."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process and its reaped children have used, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    """Run the API benchmark and print throughput, latency percentiles and the server's peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (0: closed loop, flat out)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--db-url", default=None, help="an existing, empty database (default: a new SQLite file)")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="lf-api-bench-"))
    db_url = args.db_url or f"sqlite:///{home / 'crm.db'}"
    env = {**os.environ, "LEADFLOW_DATABASE_URL": db_url, "PYTHONPATH": _pythonpath(), "PREFECT_HOME": str(home),
           "LEADFLOW_API_KEY_RATE_PER_MINUTE": "0", "LEADFLOW_API_ADDRESS_RATE_PER_MINUTE": "0",
           "LEADFLOW_HASH_KEY": os.environ.get("LEADFLOW_HASH_KEY", "bench-only-hash-key-0123456789abcdef")}
    env.pop("PREFECT_API_URL", None)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import httpx

    from leadflow.crm.api_keys import create_key
    from leadflow.crm.store import get_store

    crm = get_store(db_url)
    crm.upgrade()
    key, _ = create_key(crm, f"bench-{os.getpid()}")
    port = _free_port()
    log = (home / "api.log").open("w")
    command = [sys.executable, "-c", "from deployments.cli import main; main()", "api", "--port", str(port),
               "--workers", str(args.workers)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        load = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        server_before = _cpu_seconds(server.pid)
        latencies, failed, wall = asyncio.run(_load(url, key.token, args.rate, args.seconds, args.connections))
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = _cpu_seconds(server.pid) - server_before
        done = len(latencies)
        client_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        mode = f"open loop at {args.rate:g}/s" if args.rate > 0 else "closed loop"
        print(f"{mode}, {args.connections} keep-alive connections, {args.workers} worker(s), "
              f"{crm.dialect}; load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
        print(f"{done} POSTs in {wall:.1f} s: {done / wall:.0f} req/s sustained; {failed} not 202")
        if latencies:
            ms = [x * 1000 for x in latencies]
            print(f"latency ms: p50 {_percentile(ms, 0.50):.1f}, p90 {_percentile(ms, 0.90):.1f}, "
                  f"p99 {_percentile(ms, 0.99):.1f}, max {max(ms):.1f}, mean {statistics.fmean(ms):.1f}")
        # The number a loaded machine cannot blur much: what one request costs the server in CPU.
        print(f"server CPU {server_cpu:.1f} s = {server_cpu / max(done, 1) * 1000:.2f} ms per request "
              f"(one idle core would serve about {done / server_cpu if server_cpu else float('nan'):.0f} req/s)")
        print(f"server peak RSS {_peak_rss_mb(server.pid):.0f} MB; benchmark client CPU {client_cpu:.1f} s "
              f"({client_cpu / wall * 100:.0f}% of one core)")
        from leadflow.crm.inbox import pending_count

        print(f"inbox rows: {pending_count(crm)}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        crm.dispose()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
