"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

Usage::

    with LLMTestServer() as server:          # port 0: the OS picks a free port
        server.enqueue(Reply(status=500), answer("buy", 0.8))
        ...  # point a client at server.base_url

Replies come from the queue first, then from ``server.script(request, n)`` (a function of
the request's JSON body and its 0-based arrival number), else ``server.default``. A reply
with ``hold=True`` answers only once ``server.release`` is set (``stop`` sets it), so a
client timeout can be tested without sleeping in the test. The server counts requests,
records their headers and bodies, and tracks the most requests it had in flight at once.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: a chat completion with ``content``, or a raw ``body``."""

    status: int = 200
    content: str | None = None  # wrapped in a chat-completions envelope
    body: bytes | None = None  # sent as is instead of the envelope
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # answer only once the server's release event is set
    prompt_tokens: int = 10
    completion_tokens: int = 5


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What the server saw: path, headers (names lower-cased) and the JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def user_prompt(self) -> str:
        return self.body["messages"][-1]["content"]


def answer(action: str, confidence: float, reasoning: str = "", **kwargs: Any) -> Reply:
    """A well-formed model answer as the chat content."""
    content = json.dumps({"action": action, "confidence": confidence, "reasoning": reasoning})
    return Reply(content=content, **kwargs)


class LLMTestServer:
    """A chat-completions server in a daemon thread; ``stop`` ends it and every handler.

    Parameters
    ----------
    latency_s : float, default 0
        Each answer waits this long first (on the release event, so ``stop`` cuts it short).
    gate : int, default 0
        When > 0, each request waits (at most ``gate_timeout_s``) until ``gate`` requests
        have been in flight at once: a serial client cannot pass the gate early.
    """

    def __init__(self, *, latency_s: float = 0.0, gate: int = 0,
                 gate_timeout_s: float = 2.0) -> None:
        self.latency_s = latency_s
        self.gate = gate
        self.gate_timeout_s = gate_timeout_s
        self.default = answer("hold", 0.5, "default answer")
        self.script: Callable[[dict[str, Any], int], Reply] | None = None
        self.release = threading.Event()
        self.requests: list[ReceivedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Reply] = deque()
        self._gate_open = threading.Event()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> LLMTestServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held answers, stop serving and close the socket."""
        self.release.set()
        self._gate_open.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LLMTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _receive(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            number = len(self.requests)
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.gate and self.in_flight >= self.gate:
                self._gate_open.set()
            if self._queue:
                return self._queue.popleft()
        return self.script(request.body, number) if self.script else self.default

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the default listen backlog of 5 drops bursts of connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that left is expected
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: LLMTestServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"raw": raw.decode("utf-8", "replace")}
        request = ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        answered = False
        try:
            reply = owner._receive(request)
            if owner.gate:
                owner._gate_open.wait(owner.gate_timeout_s)
            if reply.hold:
                owner.release.wait()
            elif owner.latency_s > 0:
                owner.release.wait(owner.latency_s)
            owner._done()  # before the answer: the client may send its next request at once
            answered = True
            self._send(reply)
        except OSError:
            pass  # the client gave up (timeout) before the answer
        finally:
            if not answered:
                owner._done()

    def _send(self, reply: Reply) -> None:
        if reply.body is not None:
            payload = reply.body
        elif reply.status == 200:
            payload = json.dumps({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply.content or ""}}],
                "usage": {"prompt_tokens": reply.prompt_tokens,
                          "completion_tokens": reply.completion_tokens,
                          "total_tokens": reply.prompt_tokens + reply.completion_tokens},
            }).encode()
        else:
            payload = json.dumps({"error": {"message": f"scripted {reply.status}"}}).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
