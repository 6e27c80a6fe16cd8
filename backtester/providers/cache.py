"""Record/replay cache of LLM responses: one JSON-lines file per provider.

Each line is one response: ``{"key", "provider", "model", "response", "usage", "created"}``.
The key is the SHA-256 of the canonical JSON of (provider name, model, messages,
temperature, max_tokens and, unless "none", the configured structured-output form), so any
change to the prompt or its parameters misses. The configured form, not the one a server
fallback ended up using, is part of the key, so a replay without network finds the
record run's answers. No API key
is ever part of a key or a line, and nothing is pickled: the file is plain JSON text.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

CACHE_MODES = ("live", "record", "replay")


def cache_key(provider: str, model: str, messages: list[dict[str, str]],
              temperature: float, max_tokens: int, structured_output: str = "none") -> str:
    """SHA-256 (hex) of the canonical JSON of one request's identity.

    ``structured_output`` "none" leaves the key as it was before structured output
    existed, so caches recorded without it still hit.
    """
    identity = {
        "provider": provider,
        "model": model,
        "messages": messages,
        "temperature": float(temperature),
        "max_tokens": int(max_tokens),
    }
    if structured_output != "none":
        identity["structured_output"] = structured_output
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored answer: the content string and the token usage reported with it."""

    response: str
    usage: dict[str, int] = field(default_factory=dict)
    model: str = ""


class ResponseCache:
    """Append-only JSON-lines cache of responses, loaded lazily on first lookup.

    Parameters
    ----------
    path : Path
        The provider's file, e.g. ``data/memory/llm_cache/<provider>.jsonl``; created with
        its folder on the first append.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, CachedResponse] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def get(self, key: str) -> CachedResponse | None:
        """The stored response for ``key``, or None."""
        return self._load().get(key)

    def models(self) -> set[str]:
        """The models the stored responses came from."""
        return {entry.model for entry in self._load().values()}

    def _load(self) -> dict[str, CachedResponse]:
        with self._lock:
            if self._entries is None:
                self._entries = _read_lines(self.path)
            return self._entries

    @contextmanager
    def appender(self, *, provider: str, model: str) -> Iterator[Any]:
        """Open the file for one batch; yields ``append(key, response, usage)``.

        Each append writes one line and flushes it; the batch is fsynced on exit, so a
        killed process loses at most a partial last line, which the next load skips.
        """
        entries = self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            if handle.tell() > 0 and not _ends_with_newline(self.path):
                handle.write(b"\n")  # close a truncated line so the next one stands alone

            def append(key: str, response: str, usage: dict[str, int]) -> None:
                line = orjson.dumps({
                    "key": key,
                    "provider": provider,
                    "model": model,
                    "response": response,
                    "usage": usage,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                })
                with self._lock:
                    handle.write(line + b"\n")
                    handle.flush()
                    entries[key] = CachedResponse(response, dict(usage), model)

            try:
                yield append
            finally:
                handle.flush()
                os.fsync(handle.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _read_lines(path: Path) -> dict[str, CachedResponse]:
    entries: dict[str, CachedResponse] = {}
    if not path.exists():
        return entries
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            key, response = item["key"], item["response"]
            if not isinstance(key, str) or not isinstance(response, str):
                raise TypeError("key and response must be strings")
            usage = item.get("usage") or {}
            entries[key] = CachedResponse(response, {k: int(v) for k, v in usage.items()},
                                          str(item.get("model", "")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
            what = "its last line, truncated (a killed process?)" if last else f"line {number}"
            warnings.warn(
                f"{path}: skipped {what}, which is not a complete cache entry; "
                "record mode will request that response again",
                stacklevel=3,
            )
    return entries
