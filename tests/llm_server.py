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

It behaves like the real servers where tests need it to:

- ``response_format``: ``accepts`` lists the types it takes; another type is refused the
  way llama-cpp-python 0.3.36 does (``refuse_style = "llama_cpp"``: HTTP 500 whose body,
  copied from the real server, says "Input should be 'text' or 'json_object'") or OpenAI
  does (``"openai"``: HTTP 400 naming response_format), before the queue or the script is
  consulted.
- ``GET /v1/models`` lists ``models`` (None: HTTP 404, as servers without that path do).
- ``api_key``: when set, a request without ``Authorization: Bearer <api_key>`` gets
  OpenAI's 401 body; ``context_limit``: a prompt of more tokens (4 characters a token)
  plus max_tokens gets the 400 "maximum context length" body vLLM and llama-cpp-python send.
- ``slots``: at most that many requests are served at once, each for ``latency_s``
  (llama.cpp ``--parallel``, ``OLLAMA_NUM_PARALLEL``); the rest queue.
- ``small_model`` (a script) answers in prose unless structured output is asked for, as a
  small model does.
"""

from __future__ import annotations

import hashlib
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


def error_reply(status: int, message: str, *, code: str | None = None,
                param: str | None = None) -> Reply:
    """An error with OpenAI's body: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}
    return Reply(status=status, body=json.dumps(body).encode())


def context_overflow(prompt_tokens: int, limit: int, max_tokens: int) -> Reply:
    """HTTP 400 as vLLM and llama-cpp-python answer a prompt longer than the context."""
    return error_reply(400, (
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} "
        "in the completion). Please reduce the length of the messages or completion."),
        code="context_length_exceeded", param="messages")


def invalid_key() -> Reply:
    """HTTP 401 as OpenAI answers a wrong key (it masks the key it quotes)."""
    return error_reply(401, "Incorrect API key provided: sk-tes***************1234. You can "
                       "find your API key at https://platform.openai.com/account/api-keys.",
                       code="invalid_api_key")


def model_not_found(model: str) -> Reply:
    """HTTP 404 as OpenAI answers an unknown model."""
    return error_reply(404, f"The model `{model}` does not exist or you do not have access "
                       "to it.", code="model_not_found")


def format_refused(kind: str, style: str = "llama_cpp") -> Reply:
    """A refused ``response_format`` of type ``kind``: llama-cpp-python 0.3.36 (HTTP 500, a
    validation error in the message) or OpenAI (HTTP 400 naming the parameter)."""
    if style == "llama_cpp":  # the body llama-cpp-python 0.3.36 sends, traceback included
        message = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                   "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                   f"'json_object'\", 'input': '{kind}', 'ctx': {{'expected': \"'text' or "
                   "'json_object'\"}}\n\n  File \"llama_cpp/server/app.py\", line 376, in "
                   "create_chat_completion\n    POST /v1/chat/completions")
        body = {"error": {"message": message, "type": "internal_server_error", "param": None,
                          "code": None}}
        return Reply(status=500, body=json.dumps(body).encode())
    return error_reply(400, f"Invalid parameter: 'response_format' of type '{kind}' is not "
                       "supported with this model.", param="response_format")


def small_model(body: dict[str, Any], number: int) -> Reply:
    """A small model: prose without structured output, a valid JSON answer with it; the
    action follows a hash of the prompt (the same prompt, the same answer)."""
    digest = hashlib.sha256(body["messages"][-1]["content"].encode()).digest()
    action = ("buy", "sell", "hold")[digest[0] % 3]
    if body.get("response_format") is None:
        return Reply(content=f"Looking at the indicators, I think a {action} makes sense here "
                     "because the trend and momentum point that way, but the risk is high.")
    return answer(action, round(0.5 + digest[1] / 510, 3), f"the indicators favour {action}")


class LLMTestServer:
    """A chat-completions server in a daemon thread; ``stop`` ends it and every handler.

    Parameters
    ----------
    latency_s : float, default 0
        Each answer waits this long first (on the release event, so ``stop`` cuts it short).
    gate : int, default 0
        When > 0, each request waits (at most ``gate_timeout_s``) until ``gate`` requests
        have been in flight at once: a serial client cannot pass the gate early.
    slots : int, default 0
        When > 0, at most ``slots`` requests are served (answered after ``latency_s``) at
        once; ``max_serving`` records the most served together.
    """

    def __init__(self, *, latency_s: float = 0.0, gate: int = 0,
                 gate_timeout_s: float = 2.0, slots: int = 0) -> None:
        self.latency_s = latency_s
        self.gate = gate
        self.gate_timeout_s = gate_timeout_s
        self.slots = slots
        self.default = answer("hold", 0.5, "default answer")
        self.script: Callable[[dict[str, Any], int], Reply] | None = None
        self.accepts: tuple[str, ...] = ("json_schema", "json_object")  # response_format types
        self.refuse_style = "llama_cpp"  # or "openai"
        self.models: list[str] | None = ["test-model"]  # GET /v1/models; None: 404
        self.api_key: str | None = None  # when set, requests must carry it
        self.context_limit: int | None = None  # tokens (4 characters each) incl. max_tokens
        self.release = threading.Event()
        self.requests: list[ReceivedRequest] = []  # chat requests (POST)
        self.listings = 0  # GET /v1/models requests
        self.in_flight = 0
        self.max_in_flight = 0
        self.serving = 0
        self.max_serving = 0
        self._slots = threading.BoundedSemaphore(slots) if slots > 0 else None
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
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
            if self._queue:
                return self._queue.popleft()
        return self.script(request.body, number) if self.script else self.default

    def _refusal(self, request: ReceivedRequest) -> Reply | None:
        """What a real server answers before running the model, or None."""
        if not self._authorised(request.headers):
            return invalid_key()
        body = request.body
        kind = (body.get("response_format") or {}).get("type")
        if kind is not None and kind not in self.accepts:
            return format_refused(kind, self.refuse_style)
        if self.context_limit is not None:
            prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
            max_tokens = int(body.get("max_tokens", 0))
            if prompt + max_tokens > self.context_limit:
                return context_overflow(prompt, self.context_limit, max_tokens)
        return None

    def _authorised(self, headers: dict[str, str]) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    def _serve(self) -> None:
        """Wait for a slot (if limited) and the latency, as a model computing the answer."""
        if self._slots is not None:
            self._slots.acquire()
        try:
            with self._lock:
                self.serving += 1
                self.max_serving = max(self.max_serving, self.serving)
            if self.latency_s > 0:
                self.release.wait(self.latency_s)
        finally:
            with self._lock:
                self.serving -= 1
            if self._slots is not None:
                self._slots.release()

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

    def do_GET(self) -> None:
        owner = self.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        with owner._lock:
            owner.listings += 1
        if not self.path.rstrip("/").endswith("/models"):
            reply = Reply(status=404, body=b'{"detail": "Not Found"}')
        elif not owner._authorised(headers):
            reply = invalid_key()
        elif owner.models is None:
            reply = Reply(status=404, body=b'{"detail": "Not Found"}')
        else:
            data = [{"id": m, "object": "model", "owned_by": "me"} for m in owner.models]
            reply = Reply(body=json.dumps({"object": "list", "data": data}).encode())
        try:
            self._send(reply)
        except OSError:
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
            else:
                owner._serve()
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
