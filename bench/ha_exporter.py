#!/usr/bin/env python3
"""Exporter stand-in for the HA scenario: serialises collections the way windows_exporter v0.31+
does (one process-wide lock, one collection at a time, each taking COLLECTION seconds, run to its
end even if the scraper has gone), then answers with a real scrape.

    ha_exporter.py PORT COLLECTION_SECONDS SAMPLE_FILE

GET /metrics collects and answers; GET /collections answers two numbers without waiting: the
collections started so far, and those running or waiting for the lock; GET /health answers ok.
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, COLLECTION = int(sys.argv[1]), float(sys.argv[2])
with open(sys.argv[3], "rb") as f:
    SAMPLE = f.read()
LOCK = threading.Lock()
COLLECTIONS = 0
PENDING = 0
COUNT_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Go's net/http

    def log_message(self, *args):  # quiet
        pass

    def answer(self, body: bytes, content_type: str = "text/plain; version=0.0.4; charset=utf-8") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        global COLLECTIONS, PENDING
        path = self.path.split("?")[0]
        if path == "/health":
            return self.answer(b"ok\n", "text/plain")
        if path == "/collections":
            return self.answer(f"{COLLECTIONS} {PENDING}\n".encode(), "text/plain")
        if path != "/metrics":
            self.send_error(404)
            return
        with COUNT_LOCK:
            PENDING += 1
        with LOCK:
            with COUNT_LOCK:
                COLLECTIONS += 1
            time.sleep(COLLECTION)
        with COUNT_LOCK:
            PENDING -= 1
        try:
            self.answer(SAMPLE)
        except OSError:
            pass  # the scraper (or proxy) gave up; the collection was done anyway


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
