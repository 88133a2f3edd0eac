"""A small local server for runs still going: every request renders the page afresh from the
run directory, and a live run's page reloads itself, so finished nodes appear as they land.

It binds 127.0.0.1 only, serves only the index and the pages of run directories directly
under the results root (looked up by page name, never as a path), and only GET."""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from harness.rundir import run_dirs
from harness.view.load import load_run
from harness.view.page import render_index, render_run
from harness.view.site import index_row, load_runs, page_name

#: A live run's page reloads this often (seconds).
REFRESH_S = 5


class ViewServer:
    def __init__(self, results_dir: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.results_dir = results_dir
        self._lock = threading.Lock()  # matplotlib's pyplot is not thread-safe
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def page(self, path: str) -> str | None:
        name = urlsplit(path).path.lstrip("/") or "index.html"
        with self._lock:
            if name == "index.html":
                runs = load_runs(self.results_dir)
                live = any(r.live for r in runs)
                return render_index(
                    [index_row(r) for r in runs], self.results_dir, refresh_s=REFRESH_S if live else None
                )
            for run_dir in run_dirs(self.results_dir):
                if page_name(run_dir) == name:
                    run = load_run(run_dir)
                    return render_run(run, refresh_s=REFRESH_S) if run else None
        return None

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ViewServer:
        threading.Thread(target=self.serve_forever, name="speedrun-view", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: ViewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                body = server.page(self.path)
            except Exception as exc:  # a half-written run must not take the server down
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot render: {type(exc).__name__}".encode(), "text/plain"
                )
                return
            if body is None:
                self._send(HTTPStatus.NOT_FOUND, b"no such page", "text/plain")
            else:
                self._send(HTTPStatus.OK, body.encode(), "text/html; charset=utf-8")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the library never prints

    return Handler
