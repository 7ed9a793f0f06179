"""`leadflow api` under load: sustained POSTs per second and latency percentiles with keep-alive connections.

Starts `leadflow api` (the real command, one uvicorn worker unless --workers) from one or more checkouts, each
against a CRM of its own (a new SQLite file, or a scratch database on the --db-url PostgreSQL server), creates a
key, then posts leads over keep-alive connections from separate client processes. The client is a raw asyncio
HTTP/1.1 client (request bytes built before the clock starts; only the status line and Content-Length are parsed)
so that it costs a fraction of the server's CPU and measures the server, not itself.

Open loop (--rate R): request k is due at start + k/R, spread round-robin over the connections; its latency is
counted from that due time, so a server that falls behind shows it (a connection carries one request at a time,
and a request whose connection is still busy waits, its wait counted). The client's own lag (a send later than
both its due time and its connection's previous answer) is reported; when its p99 is over --max-client-lag-ms
the run is marked INVALID: the numbers then describe the client or the box, not the server. Closed loop
(--rate 0): every connection posts as fast as its answers come.

A checkout given as PATH:plain is served with uvloop and httptools hidden (as installed without uvicorn's
[standard] extras). With several checkouts (--checkout A --checkout B) the runs alternate A, B, A, B for --rounds
on the same box, each server with its own database, so a loaded machine blurs both alike. Rate limits are off;
events are not emitted (no Prefect API), so this measures the HTTP path and the inbox commit.

    .venv/bin/python bench/api_bench.py --rate 500 --seconds 20
    .venv/bin/python bench/api_bench.py --rate 0 --seconds 20 --connections 8
    .venv/bin/python bench/api_bench.py --checkout . --checkout /work/main:plain --rounds 2 --rate 500
    .venv/bin/python bench/api_bench.py --db-url postgresql://postgres@127.0.0.1:5432/postgres --workers 2
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = "/v1/leads"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def _request(port: int, token: str, n: int, tag: str) -> bytes:
    body = json.dumps({"email": f"lead{n}.{tag}@company{n % 997}.example", "first_name": "Pat",
                       "source": "web_form", "company": f"Company {n % 997}",
                       "message": "We would like a demo."}).encode()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; returns its status (only the status line and Content-Length are parsed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    at = head.lower().find(b"content-length:")
    if at >= 0:
        length = int(head[at + 15:head.index(b"\r\n", at)])
        if length:
            await reader.readexactly(length)
    return status


async def _connection(port: int, requests: list[bytes], dues: list[float] | None, until: float,
                      out: dict[str, array.array]) -> None:
    """One keep-alive connection: its share of the schedule (open loop) or flat out until `until` (closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latency, lag, failed = out["latency"], out["lag"], out["failed"]
    free_at = 0.0
    try:
        for i, request in enumerate(requests):
            if dues is None:
                if time.monotonic() >= until:
                    break
                due = time.monotonic()
            else:
                due = dues[i]
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent = time.monotonic()
            # Client lag: how much later than both its due time and the connection's last answer this went out.
            lag.append(sent - max(due, free_at))
            writer.write(request)
            try:
                status = await _answer(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                failed.append(1.0)
                break
            free_at = time.monotonic()
            latency.append(free_at - due)
            if status != 202:
                failed.append(float(status))
    finally:
        writer.close()


def _client(port: int, token: str, index: int, connections: int, processes: int, rate: float, start: float,
            seconds: float, warm: int, pipe) -> None:
    """A client process: `connections` keep-alive connections; sends back its latencies, lags, failures, CPU."""
    try:
        import uvloop  # the client's loop costs less with it; plain asyncio otherwise
        uvloop.install()
    except ImportError:
        pass
    total = int(rate * seconds) if rate > 0 else int(4000 * seconds)
    slots = processes * connections
    mine = [[] for _ in range(connections)]
    dues = [[] for _ in range(connections)]
    for n in range(total):
        slot = n % slots
        if slot // connections != index:
            continue
        mine[slot % connections].append(_request(port, token, n, "b"))
        dues[slot % connections].append(start + n / rate if rate > 0 else 0.0)
    out = {"latency": array.array("d"), "lag": array.array("d"), "failed": array.array("d")}

    async def run() -> None:
        # Warm the server's first-request paths on throwaway connections before the clock starts.
        warm_out = {"latency": array.array("d"), "lag": array.array("d"), "failed": array.array("d")}
        await asyncio.gather(*(_connection(port, [_request(port, token, -1 - k, f"w{index}")], None, start,
                                           warm_out) for k in range(warm)))
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        await asyncio.gather(*(_connection(port, mine[c], dues[c] if rate > 0 else None, start + seconds, out)
                               for c in range(connections)))

    before = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    pipe.send({k: v.tobytes() for k, v in out.items()} | {"cpu": cpu, "end": time.monotonic()})
    pipe.close()


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its live descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    family, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return {p: cpu[p] for p in family if p in cpu}


def _pids_cpu(pids: set[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def _peak_rss_mb(pids: list[int]) -> float:
    peak = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


@dataclass
class Server:
    """One `leadflow api` under test: its checkout, database, port and process."""

    label: str
    checkout: Path
    db_url: str
    home: Path
    token: str = ""
    port: int = 0
    process: subprocess.Popen | None = None
    drop_db: Callable[[], None] | None = None  # drops its scratch PostgreSQL database
    results: list[dict] = field(default_factory=list)


def _hide_speedups(home: Path) -> str:
    """A directory whose uvloop and httptools fail to import: uvicorn then serves as without its [standard] extras."""
    shim = home / "plain"
    for name in ("uvloop", "httptools"):
        (shim / name).mkdir(parents=True, exist_ok=True)
        (shim / name / "__init__.py").write_text(f"raise ImportError('{name} hidden by api_bench --checkout :plain')\n")
    return str(shim)


def _backend_pids(db_url: str) -> set[int]:
    """PostgreSQL backends serving one database (their CPU is the database server's share of a request)."""
    from leadflow.crm.store import Store

    store = Store(db_url)
    try:
        return set(store.backend_cpu_seconds())
    finally:
        store.dispose()


def _start(server: Server, workers: int, env_base: dict[str, str], plain: bool = False) -> None:
    import httpx

    env = {**env_base, "LEADFLOW_DATABASE_URL": server.db_url, "PREFECT_HOME": str(server.home),
           # The served checkout first, so its code (not this one's) answers.
           "PYTHONPATH": os.pathsep.join(filter(None, [_hide_speedups(server.home) if plain else None,
                                                       str(server.checkout), os.environ.get("PYTHONPATH")]))}
    # Migrated and keyed by the served checkout itself: another checkout may be at another migration head.
    setup = ("import os, time; from leadflow.crm.api_keys import create_key; from leadflow.crm.store import get_store; "
             "crm = get_store(os.environ['LEADFLOW_DATABASE_URL']); crm.upgrade(); "
             "print(create_key(crm, f'bench-{os.getpid()}-{time.monotonic_ns()}')[0].token); crm.dispose()")
    server.token = subprocess.run([sys.executable, "-c", setup], cwd=server.checkout, env=env, check=True,
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1]
    server.port = _free_port()
    log = (server.home / f"api-{server.port}.log").open("w")
    command = [sys.executable, "-c", "from deployments.cli import main; main()", "api", "--port", str(server.port),
               "--workers", str(workers)]
    server.process = subprocess.Popen(command, cwd=server.checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200:
                # With several workers, each answers its first requests slowly: give them all a moment.
                time.sleep(1.0 if workers > 1 else 0.0)
                return
        except httpx.HTTPError:
            pass
        if server.process.poll() is not None:
            break
        time.sleep(0.3)
    raise SystemExit(f"{server.label}: leadflow api did not come up:\n{Path(log.name).read_text()[-3000:]}")


def _stop(server: Server) -> None:
    if server.process is None or server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process = None


def _run(server: Server, args: argparse.Namespace) -> dict:
    """One measured run against a started server: the merged results of every client process."""
    ctx = multiprocessing.get_context("fork")
    per_process = max(1, args.connections // args.clients)
    start = time.monotonic() + 1.5 + 0.2 * args.connections
    load = os.getloadavg()[0]
    server_before = _tree_cpu(server.process.pid)
    db_pids: set[int] = set()
    db_before: dict[int, float] = {}
    pipes, procs = [], []
    for index in range(args.clients):
        mine, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_client, args=(server.port, server.token, index, per_process, args.clients,
                                                 args.rate, start, args.seconds,
                                                 1 if index else max(2, args.workers * 2), theirs))
        proc.start()
        theirs.close()
        pipes.append(mine)
        procs.append(proc)
    # The server's CPU is counted from the schedule's start (after the warm-up requests).
    time.sleep(max(0.0, start - time.monotonic()))
    server_before = _tree_cpu(server.process.pid)
    if server.drop_db is not None:
        db_pids = _backend_pids(server.db_url)
        db_before = _pids_cpu(db_pids)
    spy = None
    if args.profile:
        # Sampled on the busiest process of the server (its one worker, or the first of several).
        target = max((p for p in server_before if p != server.process.pid), key=server_before.get,
                     default=server.process.pid)
        out = Path(args.profile) / f"{server.label.replace(':', '-').replace(' ', '')}-{int(time.time())}.txt"
        spy_bin = str(Path(sys.executable).with_name("py-spy"))
        spy = subprocess.Popen([spy_bin, "record", "-p", str(target), "-d", str(int(args.seconds)), "-r", "200",
                                "--format", "raw", "-o", str(out), "--nonblocking"]
                               + (["--idle"] if args.profile_idle else []),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = [pipe.recv() for pipe in pipes]
    if spy is not None:
        spy.wait()
    for proc in procs:
        proc.join()
    wall = max(p["end"] for p in parts) - start
    server_after = _tree_cpu(server.process.pid)
    server_cpu = _spent(server_before, server_after)
    db_cpu = _spent(db_before, _pids_cpu(db_pids)) if server.drop_db is not None else None
    latency = [x * 1000 for p in parts for x in array.array("d", p["latency"])]
    lag = [x * 1000 for p in parts for x in array.array("d", p["lag"])]
    failed = sum(len(array.array("d", p["failed"])) for p in parts)
    client_cpu = sum(p["cpu"] for p in parts)
    done = len(latency)
    return {"server": server.label, "load": load, "load_end": os.getloadavg()[0], "done": done, "wall": wall,
            "rps": done / wall if wall > 0 else 0.0, "failed": failed,
            "p50": _percentile(latency, 0.50), "p90": _percentile(latency, 0.90),
            "p99": _percentile(latency, 0.99), "max": max(latency, default=float("nan")),
            "lag_p99": _percentile(lag, 0.99), "lag_max": max(lag, default=float("nan")),
            "server_cpu_ms": server_cpu / max(done, 1) * 1000,
            "db_cpu_ms": db_cpu / max(done, 1) * 1000 if db_cpu is not None else None,
            "client_cpu_ms": client_cpu / max(done, 1) * 1000,
            "rss": _peak_rss_mb(list(server_after))}


def _print(result: dict, args: argparse.Namespace) -> None:
    valid = args.rate <= 0 or result["lag_p99"] <= args.max_client_lag_ms
    db = f", PostgreSQL backends {result['db_cpu_ms']:.2f} ms" if result["db_cpu_ms"] is not None else ""
    print(f"[{result['server']}] load {result['load']:.1f}->{result['load_end']:.1f}: {result['done']} POSTs in "
          f"{result['wall']:.1f} s = {result['rps']:.0f} req/s; {result['failed']} not 202; latency ms p50 "
          f"{result['p50']:.1f} p90 {result['p90']:.1f} p99 {result['p99']:.1f} max {result['max']:.1f}; "
          f"CPU per request: server {result['server_cpu_ms']:.2f} ms{db}, client {result['client_cpu_ms']:.2f} ms; "
          f"client lag p99 {result['lag_p99']:.1f} ms max {result['lag_max']:.1f} ms; peak RSS {result['rss']:.0f} MB"
          + ("" if valid else f"  ** INVALID: the client fell behind its schedule (lag p99 over "
                              f"{args.max_client_lag_ms:g} ms) **"), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the API benchmark and print throughput, latency percentiles and CPU per request of server and client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (0: closed loop, flat out)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (over all clients)")
    parser.add_argument("--clients", type=int, default=1, help="client processes sharing the connections")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--rounds", type=int, default=1, help="runs per checkout, alternating between checkouts")
    parser.add_argument("--checkout", action="append", default=None,
                        help="a leadflow checkout whose `leadflow api` to measure (repeat to compare; default: this)")
    parser.add_argument("--db-url", default=None,
                        help="a PostgreSQL server (any database on it): each checkout gets a scratch database there, "
                             "dropped afterwards (default: a new SQLite file each)")
    parser.add_argument("--db-prefix", default="api_bench", help="name prefix of the scratch PostgreSQL databases")
    parser.add_argument("--profile", default=None, help="a directory: py-spy samples each server during its runs")
    parser.add_argument("--profile-idle", action="store_true", help="with --profile: sample waiting threads too")
    parser.add_argument("--max-client-lag-ms", type=float, default=5.0,
                        help="client lag p99 above which an open-loop run is reported invalid")
    args = parser.parse_args(argv)
    if args.connections % args.clients:
        parser.error("--connections must be a multiple of --clients")
    env = {**os.environ, "LEADFLOW_API_KEY_RATE_PER_MINUTE": "0", "LEADFLOW_API_ADDRESS_RATE_PER_MINUTE": "0",
           "LEADFLOW_HASH_KEY": os.environ.get("LEADFLOW_HASH_KEY", "bench-only-hash-key-0123456789abcdef")}
    env.pop("PREFECT_API_URL", None)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    from leadflow.crm.backfill import scratch_postgres_database

    checkouts = [(Path(c.removesuffix(":plain")).resolve(), c.endswith(":plain"))
                 for c in (args.checkout or [str(ROOT)])]
    servers: list[Server] = []
    postgres = bool(args.db_url)
    try:
        for i, (checkout, plain) in enumerate(checkouts):
            home = Path(tempfile.mkdtemp(prefix="lf-api-bench-"))
            label = f"{i + 1}:{checkout.name}{' (plain)' if plain else ''}"
            if postgres:
                url, drop = scratch_postgres_database(args.db_url, f"{args.db_prefix}_{os.getpid()}_{i}")
                server = Server(label, checkout, url, home, drop_db=drop)
            else:
                server = Server(label, checkout, f"sqlite:///{home / 'crm.db'}", home)
            servers.append(server)
            _start(server, args.workers, env, plain)
        mode = f"open loop at {args.rate:g}/s" if args.rate > 0 else "closed loop"
        print(f"{mode} for {args.seconds:g} s, {args.connections} keep-alive connections from {args.clients} client "
              f"process(es), {args.workers} worker(s), {'PostgreSQL' if postgres else 'SQLite'}; "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC", flush=True)
        for _ in range(args.rounds):
            for server in servers:
                result = _run(server, args)
                server.results.append(result)
                _print(result, args)
        if len(servers) > 1 or args.rounds > 1:
            print("upper medians over rounds (of two rounds: the worse one):")
            for server in servers:
                rows = server.results
                med = {k: _percentile([r[k] for r in rows], 0.5) for k in
                       ("rps", "p50", "p99", "server_cpu_ms", "client_cpu_ms", "lag_p99")}
                db = _percentile([r["db_cpu_ms"] for r in rows], 0.5) if postgres else None
                print(f"  [{server.label}] {med['rps']:.0f} req/s, p50 {med['p50']:.1f} ms, p99 {med['p99']:.1f} ms, "
                      f"server CPU {med['server_cpu_ms']:.2f} ms/request"
                      + (f" + PostgreSQL {db:.2f} ms" if db is not None else "")
                      + f", client CPU {med['client_cpu_ms']:.2f} ms/request, client lag p99 {med['lag_p99']:.1f} ms")
    finally:
        for server in servers:
            _stop(server)
            shutil.rmtree(server.home, ignore_errors=True)
        for server in servers:
            if server.drop_db is not None:
                server.drop_db()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
