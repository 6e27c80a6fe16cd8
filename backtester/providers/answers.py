"""The answer an LLM provider asks for: its JSON schema, how it is requested, how it is read.

A model's answer is one JSON object ``{"action": "buy" | "sell" | "hold", "confidence":
0..1, "reasoning": "..."}``. Servers are asked for it with OpenAI's ``response_format``
(``json_schema``, else ``json_object`` with the schema, else nothing); ``parse_answer``
reads it tolerantly, and whatever it cannot read is an abstention.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from backtester.providers.llm_config import STRUCTURED_OUTPUTS

ACTIONS = {"buy": 1, "sell": -1, "hold": 0}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {  # action first: a grammar-constrained answer cut short still has it
        "action": {"type": "string", "enum": ["buy", "sell", "hold"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string"},
    },
    "required": ["action", "confidence", "reasoning"],
    "additionalProperties": False,
}
SAMPLE_CHARS = 300  # a malformed answer kept as a sample is cut to this length
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
# Last resort for JSON-like text that does not parse (single quotes, cut short):
_ACTION = re.compile(r"""["']?action["']?\s*[:=]\s*["']?\s*(buy|sell|hold)\b""", re.IGNORECASE)
_CONFIDENCE = re.compile(  # the number must end before a delimiter: not cut short
    r"""["']?confidence["']?\s*[:=]\s*["']?\s*([0-9]*\.?[0-9]+)\s*(%?)\s*["']?\s*[,};\n]""",
    re.IGNORECASE)
_PERCENT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*%\s*")


def response_format(form: str) -> dict[str, Any] | None:
    """The ``response_format`` request field for a ``structured_output`` form (None: none)."""
    if form == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": "trade_decision", "strict": True,
                                "schema": ANSWER_SCHEMA}}
    if form == "json_object":
        return {"type": "json_object", "schema": ANSWER_SCHEMA}
    return None


def next_form(form: str) -> str:
    """The form tried after a server rejected ``form`` ("none" stays "none")."""
    index = STRUCTURED_OUTPUTS.index(form)
    return STRUCTURED_OUTPUTS[min(index + 1, len(STRUCTURED_OUTPUTS) - 1)]


def parse_answer(content: str) -> tuple[int, float, str] | None:
    """(vote, confidence, reasoning) from a model's answer, or None when unusable.

    Accepts the JSON object alone, inside a code fence, or within prose; keys and the
    action in any case and with spaces around; confidence as 0.7, "0.7", "70%" or 70
    (a number in (1, 100] is a percentage). JSON-like text that does not parse (single
    quotes, an answer cut short) is read for its action and confidence alone.
    """
    answer = _find_answer(content)
    if answer is None:
        return _scan_answer(content)
    action = answer.get("action")
    if not isinstance(action, str) or action.strip().lower() not in ACTIONS:
        return None
    confidence = _confidence(answer.get("confidence"))
    if confidence is None:
        return None
    reasoning = answer.get("reasoning", "")
    reasoning = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    return ACTIONS[action.strip().lower()], confidence, reasoning.strip()


def sample(content: str) -> str:
    """A malformed answer as kept in a report: one line, at most ``SAMPLE_CHARS``."""
    text = " ".join(content.split())
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS - 3] + "..."


def _confidence(value: Any) -> float | None:
    percent = False
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value)
        text = match.group(1) if match else value.strip()
        percent = match is not None
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        return None
    if percent or value > 1.0:
        value /= 100.0
    return value if value <= 1.0 else None


def _find_answer(content: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    texts = [m.group(1) for m in _FENCE.finditer(content)] + [content]
    for text in texts:
        start = text.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                value = None
            if isinstance(value, dict):
                value = {str(k).strip().lower(): v for k, v in value.items()}
                if "action" in value:
                    return value
            start = text.find("{", start + 1)
    return None


def _scan_answer(content: str) -> tuple[int, float, str] | None:
    action = _ACTION.search(content)
    confidence = _CONFIDENCE.search(content)
    if action is None or confidence is None:
        return None
    value = _confidence(confidence.group(1) + confidence.group(2))
    if value is None:
        return None
    return ACTIONS[action.group(1).lower()], value, ""
