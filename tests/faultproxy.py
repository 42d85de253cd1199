"""A loopback HTTP proxy that misbehaves on request: answer 500/429, hang, drop, or
forward the request and lose the reply (the provider has the message, the client never hears).

Modes are consumed one per request, then it forwards faithfully. Bounded:
a hang lasts `hang_seconds` and the server stops with the test.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from servers import relay


class FaultProxy:
    def __init__(self, upstream: str, hang_seconds: float = 3.0) -> None:
        parts = urlsplit(upstream)
        self.modes: list[str] = []  # "500" | "429" | "hang" | "drop" | "lose-reply"
        self.seen: list[tuple[str, str, str]] = []  # (method, path, what we did)
        self.slow_reply = 0.0  # seconds a forwarded POST's reply is held: a send stays in flight
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    mode = proxy.modes.pop(0) if proxy.modes else "pass"
                    proxy.seen.append((self.command, self.path, mode))
                if mode == "hang":
                    time.sleep(hang_seconds)
                    self.close_connection = True
                    return
                if mode == "drop":
                    self.close_connection = True
                    return
                if mode in ("500", "429"):
                    data = (
                        b'{"code": 20429, "message": "Too Many Requests", "status": 429}'
                        if mode == "429"
                        else b'{"code": 20500, "message": "Internal Server Error", "status": 500}'
                    )
                    self.send_response(int(mode))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                conn.close()
                if mode == "lose-reply":
                    self.close_connection = True
                    return
                if self.command == "POST" and proxy.slow_reply:
                    time.sleep(proxy.slow_reply)  # the provider has it; the sender waits
                relay(self, reply.status, reply.reason, reply.getheaders(), data)

            do_GET = do_POST = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
