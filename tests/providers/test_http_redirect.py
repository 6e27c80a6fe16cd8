"""The chat client never sends the API key to another origin: a redirect to another port
(or host, or scheme) is refused in one line naming both origins."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_server import LLMTestServer, answer

from backtester.providers.http import ChatClient, origin

KEY = "sk-secret-test-key"


class _Redirector:
    """127.0.0.1 on its own port: answers every GET and POST with ``code`` to ``target``
    + the request's path, and records the Authorization headers it saw."""

    def __init__(self, code: int, target: str) -> None:
        owner = self
        self.seen: list[str | None] = []

        class Handler(BaseHTTPRequestHandler):
            def _redirect(self) -> None:
                owner.seen.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                path = self.path if target.startswith("http") else self.path
                self.send_response(code)
                self.send_header("Location", target.rstrip("/") + path.replace("/v1", "", 1))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _redirect

            def log_message(self, *args) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def other():
    server = LLMTestServer().start()
    server.api_key = KEY
    yield server
    server.stop()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_to_another_port_is_refused_and_the_key_never_leaves(other, code):
    # Arrange: the configured server redirects everything to another port
    redirector = _Redirector(code, other.base_url)
    try:
        client = ChatClient(redirector.base_url, "test-model", api_key=KEY, max_retries=0)
        # Act
        models = client.list_models()
        result = client.complete([{"role": "user", "content": "hi"}], temperature=0.0,
                                 max_tokens=8)
    finally:
        redirector.close()
    # Assert: nothing reached the other port; each error is one line naming both origins
    assert other.listings == 0 and other.request_count == 0
    for error in (models.error, result.error):
        assert "\n" not in error and KEY not in error
        assert f"redirect from {origin(redirector.base_url)} to {origin(other.base_url)} " \
               "refused" in error
    assert result.content is None


def test_the_redirect_guard_leaves_plain_requests_alone(other):
    # Arrange
    other.enqueue(answer("buy", 0.9))
    client = ChatClient(other.base_url, "test-model", api_key=KEY, max_retries=0)
    # Act
    result = client.complete([{"role": "user", "content": "hi"}], temperature=0.0,
                             max_tokens=8)
    # Assert
    assert result.ok and other.request_count == 1


def test_origin_spells_out_default_ports():
    assert origin("https://API.example.com/v1") == "https://api.example.com:443"
    assert origin("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000"
