"""A small static HTTP server for feed files, with ETag and Last-Modified.

Used by ``news-monitor demo`` to serve the sample feed in ``seeds/`` on 127.0.0.1, and by
the tests as a real feed server. It answers conditional requests with 304 like a well
behaved feed host, and counts requests per path so tests can see what was fetched.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TYPES = {
    ".xml": "application/rss+xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
}


class FeedServer:
    """Serve the files of ``root`` on 127.0.0.1 in a background thread."""

    def __init__(self, root: Path, port: int = 0, poll_interval: float = 0.5) -> None:
        self.root = root.resolve()
        self.requests: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the daemon logs its own fetches

            def do_GET(self) -> None:
                name = self.path.split("?", 1)[0].lstrip("/")
                server.requests[name] += 1
                target = (server.root / name).resolve()
                if server.root not in target.parents or not target.is_file():
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                body = target.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                mtime = int(target.stat().st_mtime)
                if self._fresh(etag, mtime):
                    server.not_modified[name] += 1
                    self.send_response(HTTPStatus.NOT_MODIFIED)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", TYPES.get(target.suffix, "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", formatdate(mtime, usegmt=True))
                self.end_headers()
                self.wfile.write(body)

            def _fresh(self, etag: str, mtime: int) -> bool:
                match = self.headers.get("If-None-Match")
                if match is not None:
                    return etag in [t.strip() for t in match.split(",")]
                since = self.headers.get("If-Modified-Since")
                if since:
                    try:
                        return mtime <= parsedate_to_datetime(since).timestamp()
                    except (TypeError, ValueError):
                        return False
                return False

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        # serve_forever() notices shutdown() only every poll_interval seconds.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
