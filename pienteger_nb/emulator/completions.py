"""POST /completions requests checked like the service checks them, and the model list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .generate import count_tokens
from .wire import APIError, printable

# id -> context length. The order is the order GET /models lists them in.
MODELS: dict[str, int] = {
    "text-davinci-003": 4096,
    "text-davinci-002": 4096,
    "gpt-3.5-turbo-instruct": 4096,
    "text-curie-001": 2048,
    "text-babbage-001": 2048,
    "text-ada-001": 2048,
}
# Like the reference, the service names some models differently in its answers.
ANSWERED_AS = {"text-davinci-003": "text-davinci:003"}
DEFAULT_PROMPT = "<|endoftext|>"


def model_object(model_id: str) -> dict[str, Any]:
    """One model as GET /models lists it."""
    return {
        "id": model_id,
        "object": "model",
        "created": 1669599635,
        "owned_by": "pienteger",
        "context_length": MODELS[model_id],
        "permission": [{"object": "model_permission", "allow_sampling": True, "allow_logprobs": True,
                        "organization": "*", "is_blocking": False}],
    }


def _bad(message: str, param: str, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(body: dict[str, Any], name: str, default: int | None, low: int | None = None,
             high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value):
        raise _bad(f"{value!r} is not of type 'integer' - '{name}'", name, "invalid_type")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise _bad(f"{name} must be {bounds}, got {value}", name, "invalid_value")
    return value


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value):
        raise _bad(f"{value!r} is not of type 'number' - '{name}'", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low:g} and {high:g}, got {value}", name, "invalid_value")
    return float(value)


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{value!r} is not of type 'boolean' - '{name}'", name, "invalid_type")
    return value


@dataclass(frozen=True)
class CompletionRequest:
    """A checked POST /completions body."""

    model: str
    prompts: tuple[str, ...]
    suffix: str | None
    max_tokens: int
    temperature: float
    n: int
    best_of: int
    stream: bool
    include_usage: bool
    logprobs: int | None
    echo: bool
    stop: tuple[str, ...]
    seed: int | None


def parse_request(body: Any) -> CompletionRequest:
    """The request, or an APIError(400) naming the bad parameter. Unknown names are let through."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    _check_text(body)
    if "user" in body:
        raise _bad("user is read-only: the service sets it to your Pienteger id; do not send it.", "user")
    model = body.get("model")
    if model is None:
        raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise _bad(f"{model!r} is not of type 'string' - 'model'", "model", "invalid_type")
    if model not in MODELS:
        # PIENTEGER_API.md: 404 for an unknown model (param still names it).
        raise APIError(404, f"The model `{model}` does not exist", param="model", code="model_not_found")
    prompt = body.get("prompt", DEFAULT_PROMPT)
    if prompt is None:
        prompt = DEFAULT_PROMPT
    if isinstance(prompt, str):
        prompts: tuple[str, ...] = (prompt,)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = tuple(prompt)
    else:
        raise _bad("prompt must be a string or a non-empty array of strings", "prompt", "invalid_type")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _bad(f"{suffix!r} is not of type 'string' - 'suffix'", "suffix", "invalid_type")
    max_tokens = _integer(body, "max_tokens", 16, 0)
    assert max_tokens is not None
    temperature = _number(body, "temperature", 1.0, 0, 2)
    _number(body, "top_p", 1.0, 0, 1)
    _number(body, "presence_penalty", 0.0, -2, 2)
    _number(body, "frequency_penalty", 0.0, -2, 2)
    n = _integer(body, "n", 1, 1, 128)
    assert n is not None
    stream = _boolean(body, "stream")
    echo = _boolean(body, "echo")
    logprobs = _integer(body, "logprobs", None, 0, 5)
    best_of = _integer(body, "best_of", None, 1, 20)
    if best_of is not None and stream:
        raise _bad("best_of cannot be used with stream", "best_of")
    if best_of is not None and best_of < n:
        raise _bad(f"best_of must be greater than or equal to n ({best_of} < {n})", "best_of")
    seed = _integer(body, "seed", None)
    include_usage = _stream_options(body.get("stream_options"), stream)
    stop = _stop(body.get("stop"))
    _logit_bias(body.get("logit_bias"))
    context = MODELS[model]
    extra = count_tokens(suffix) if suffix else 0
    for text in prompts:
        used = count_tokens(text) + extra
        if used + max_tokens > context:
            raise _bad(
                f"This model's maximum context length is {context} tokens, however you requested "
                f"{used + max_tokens} tokens ({used} in your prompt; {max_tokens} for the completion). "
                "Please reduce your prompt; or completion length.",
                "max_tokens", "context_length_exceeded")
    return CompletionRequest(model, prompts, suffix, max_tokens, temperature, n, best_of or n, stream,
                             include_usage, logprobs, echo, stop, seed)


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_text(body: dict[str, Any]) -> None:
    """A 400 naming the first field that holds a lone surrogate anywhere inside it.

    JSON may spell one (``"\\ud800"``) but it has no UTF-8 form: echoed in an answer or an error it
    would fail to encode. Checked up front, unknown fields included, so nothing downstream meets one.
    """
    for name, value in body.items():
        pending = [name, value]
        while pending:  # a loop, not recursion: the parser allows nesting deeper than our stack
            item = pending.pop()
            if isinstance(item, str):
                if not _encodes(item):
                    shown = printable(name, 100)
                    raise _bad(f"{shown} is not valid Unicode text: it holds a lone surrogate (such as "
                               "\\ud800), which has no UTF-8 form. Send well-formed text.", shown, "invalid_value")
            elif isinstance(item, dict):
                pending.extend(item)
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)


def _stream_options(value: Any, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise _bad("stream_options is only allowed when stream is true", "stream_options")
    if not isinstance(value, dict):
        raise _bad(f"{value!r} is not of type 'object' - 'stream_options'", "stream_options", "invalid_type")
    include = value.get("include_usage", False)
    if not isinstance(include, bool):
        raise _bad(f"{include!r} is not of type 'boolean' - 'stream_options.include_usage'",
                   "stream_options.include_usage", "invalid_type")
    return include


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _bad("stop must be a string or an array of strings", "stop", "invalid_type")
    if len(value) > 4:
        raise _bad(f"stop may hold at most 4 sequences, got {len(value)}", "stop", "invalid_value")
    return tuple(s for s in value if s)


def _logit_bias(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise _bad(f"{value!r} is not of type 'object' - 'logit_bias'", "logit_bias", "invalid_type")
    for key, bias in value.items():
        if not str(key).isdigit():
            raise _bad(f"logit_bias keys must be token ids, got {key!r}", "logit_bias", "invalid_value")
        if not _is_number(bias) or not -100 <= bias <= 100:
            raise _bad(f"logit_bias values must be between -100 and 100, got {bias!r}", "logit_bias",
                       "invalid_value")
