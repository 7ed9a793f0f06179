"""A real local HTTP enrichment API for tests: answers from a table, misbehaving on cue (500, 429, slow, down)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EnrichmentApi:
    """What the server knows, the misbehaviours still queued, and every call it received."""

    def __init__(self, companies: dict[str, dict[str, Any]], script: list[tuple] | None = None) -> None:
        self.companies = companies
        self.script = list(script or [])
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def next_move(self) -> tuple:
        with self.lock:
            return self.script.pop(0) if self.script else ("ok",)


@contextmanager
def enrichment_server(api: EnrichmentApi) -> Iterator[str]:
    """Serve `api` on a free loopback port; yields the lookup URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            domains = list(body.get("domains", []))
            with api.lock:
                api.calls.append(domains)
            move = api.next_move()
            if move[0] == "status":
                self._send(move[1], {"error": "scripted"}, move[2] if len(move) > 2 else None)
                return
            if move[0] == "slow":
                time.sleep(move[1])
            results = {d: api.companies.get(d) for d in domains}
            self._send(200, {"results": results})

        def _send(self, status: int, payload: dict, retry_after: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            # The client may have given up on a slow answer: that is the point of the slow move.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/companies/lookup"
    finally:
        server.shutdown()
        server.server_close()
