"""JSON read from users, bounded and validated: edgeai metadata in ONNX files, bundle manifests,
``bench --compare-to`` files, ``deploy --preprocessing``.

Three checks, in order, each before the next allocates anything in proportion to the input:
size (bytes), nesting depth (a linear scan: Python's parser recurses and raises ``RecursionError``
on deep input), then a JSON Schema (``jsonschema``, Draft 2020-12) for the fields edgeai reads. A
failure is one error of the caller's class naming what was read, where in it, and what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edgeai.errors import EdgeAIError

MAX_DEPTH = 64
MAX_BYTES = 64 << 20  # a manifest of a bundle with many variants is tens of kB; metadata a few kB


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting in a JSON text, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _path(parts: Any) -> str:
    out = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return out.lstrip(".") or "the top level"


def validate(data: Any, schema: Mapping[str, Any], what: str, error: type[EdgeAIError] = EdgeAIError) -> Any:
    """Check parsed JSON against ``schema``; raise ``error`` naming the first problem found."""
    import jsonschema  # ~70 ms: only commands that read user JSON pay for it

    validator = jsonschema.Draft202012Validator(schema)
    problem = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if problem is not None:
        message = problem.message if len(problem.message) <= 200 else problem.message[:200] + "..."
        raise error(f"{what}: {_path(problem.absolute_path)}: {message}")
    return data


def parse(text: str | bytes, what: str, schema: Mapping[str, Any] | None = None, *,
          error: type[EdgeAIError] = EdgeAIError, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
          hint: str = "") -> Any:
    """Parse JSON from a user, bounded in size and depth, and check it against ``schema``.

    Args:
        text: the JSON (bytes must be UTF-8).
        what: how the message names it (``"manifest.json"``, ``"--compare-to prev.json"``).
        schema: a JSON Schema for the fields edgeai reads; None checks only that it parses.
        error: the EdgeAIError subclass raised.
        hint: what to do, appended to every message.

    Raises:
        ``error``: over ``max_bytes``, nested deeper than ``max_depth``, not UTF-8, not JSON, or
            not matching ``schema``.
    """
    tail = f"; {hint}" if hint else ""
    if len(text) > max_bytes:
        raise error(f"{what} is {len(text)} bytes of JSON; at most {max_bytes} are read{tail}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{what} is not UTF-8 text ({e.reason} at byte {e.start}){tail}") from None
    depth = nesting_depth(text)
    if depth > max_depth:
        raise error(f"{what} nests JSON {depth} levels deep; at most {max_depth} are read{tail}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise error(f"{what} is not valid JSON ({str(e)[:200]}){tail}") from None
    if schema is not None:
        try:
            validate(data, schema, what, error)
        except EdgeAIError as e:
            raise type(e)(f"{e}{tail}") from None
    return data
