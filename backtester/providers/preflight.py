"""One-line explanations of an LLM endpoint's failures: what the server said and what to do.

Used by ``LLMProvider.preflight`` (which raises them as ``ProviderError``) and by
``LLMProvider.chunk_failure`` (which returns them to the runner).
"""

from __future__ import annotations

import re

from backtester.providers.http import ChatResult, ModelList

_LIMIT = re.compile(r"(?:maximum context length|context window|context length|context size|"
                    r"n_ctx)\D{0,30}?(\d+)", re.IGNORECASE)
_REQUESTED = re.compile(r"(?:you requested|resulted in|requested tokens\s*\()\D{0,10}?(\d+)",
                        re.IGNORECASE)
_IN_MESSAGES = re.compile(r"(\d+) (?:tokens )?in the messages", re.IGNORECASE)
_CONTEXT_WORDS = ("context length", "context window", "context size", "maximum context",
                  "too many tokens", "prompt is too long", "exceed")
START_HINT = ("start it (e.g. `ollama serve`, `python -m llama_cpp.server --model <file.gguf>`, "
              "`vllm serve <model>`) or point base_url at the server")


def who(name: str, model: str, base_url: str) -> str:
    """The provider, its model and its URL, as errors name them."""
    return f"LLM provider '{name}' (model '{model}' at {base_url})"


def model_served(model: str, models: tuple[str, ...]) -> bool:
    """Whether ``model`` is in a server's model list (Ollama's ``:latest`` tag optional)."""
    names = set(models) | {m.removesuffix(":latest") for m in models}
    return model in names or model.removesuffix(":latest") in names


def listing_problem(name: str, model: str, base_url: str, api_key_env: str,
                    listing: ModelList) -> str | None:
    """Why ``GET /models`` rules the endpoint out (unreachable, key refused, model not
    served), or None. Any other failure of that path is left to the real request."""
    head = who(name, model, base_url)
    if listing.unreachable:
        return (f"{head}: the server is not reachable at {base_url} ({listing.error}); "
                f"{START_HINT}")
    if listing.status in (401, 403):
        return f"{head}: {listing.error}; {key_hint(api_key_env)}"
    if listing.models is not None and not model_served(model, listing.models):
        served = ", ".join(listing.models) or "none"
        return (f"{head}: the server does not serve model '{model}'; it lists: {served}; set "
                "model to one of them (or load the model into the server)")
    return None


def key_hint(api_key_env: str) -> str:
    """What to do about a refused key."""
    if api_key_env:
        return f"check the key in {api_key_env}"
    return "the server wants a key: set api_key_env to the variable that holds it"


def failure_line(name: str, model: str, base_url: str, api_key_env: str, result: ChatResult,
                 *, max_tokens: int, models: tuple[str, ...] | None = None) -> str:
    """One line naming the provider, the URL, the model, the server's error text and what
    to do, for a call that failed."""
    return f"{who(name, model, base_url)}: {result.error}; " + failure_hint(
        result, base_url=base_url, api_key_env=api_key_env, max_tokens=max_tokens,
        models=models)


def failure_hint(result: ChatResult, *, base_url: str, api_key_env: str, max_tokens: int,
                 models: tuple[str, ...] | None = None) -> str:
    """What to do about a failed call, from its status and the server's text."""
    if result.unreachable:
        return f"the server is not reachable at {base_url}: {START_HINT}"
    if result.status in (401, 403):
        return key_hint(api_key_env)
    if result.status == 404:
        served = f"the server lists: {', '.join(models)}" if models else (
            "check the model name and base_url (it usually ends in /v1)")
        return f"model or path not found; {served}"
    if result.status in (400, 413, 422) and is_context_overflow(result.error):
        return context_hint(result.error, max_tokens)
    if result.timeouts and "timed out" in result.error:
        return "the server did not answer in time: raise timeout_s or lower max_concurrency"
    if result.status == 429:
        return "the server limits the request rate: lower requests_per_minute or max_concurrency"
    if result.status >= 500:
        return "the server failed: see its log"
    return "see the server's message"


def is_context_overflow(text: str) -> bool:
    """Whether a server's error text says the prompt is longer than the model's context."""
    lowered = text.lower()
    return "context" in lowered and any(word in lowered for word in _CONTEXT_WORDS) or (
        "too many tokens" in lowered or "prompt is too long" in lowered)


def context_hint(text: str, max_tokens: int) -> str:
    """The prompt's token count and the server's limit, where the server says them."""
    limit = _LIMIT.search(text)
    requested = _REQUESTED.search(text)
    prompt = _IN_MESSAGES.search(text)
    figures = []
    if prompt:
        figures.append(f"prompt {prompt.group(1)} tokens + max_tokens {max_tokens}")
    if requested:
        figures.append(f"{requested.group(1)} tokens requested")
    if limit:
        figures.append(f"the model's context is {limit.group(1)} tokens")
    said = f" ({', '.join(figures)})" if figures else ""
    return (f"the prompt does not fit the model's context{said}: shorten the prompt template, "
            "lower k_similar or max_tokens, or serve the model with a longer context "
            "(llama.cpp: --n_ctx; Ollama: num_ctx)")
