"""The simulator's model catalogue: what `GET /public/v1/models` and `GET /v1/models` answer.

The public list (no key) describes every model the simulator serves, plus the retired ones it
is configured with, in the provider's shape: `pricing` per token as decimal strings,
`limits.max_context_length` (the simulator's own `context_length`, the window it enforces),
`limits.max_completion_tokens`, `capabilities`, `preview`, and `deprecated` with the
`deprecation_date` a deprecated or retired model stops (or stopped) being served. The keyed
list has only the models a request may use: retired ones are absent, and a chat request for
one gets 404 `model_not_found`, as from the provider.

Figures of known models follow the provider's published ones; any other model gets
`DEFAULT_FACTS`.
"""

from __future__ import annotations

from typing import Any

from enrich.sim.config import SimConfig

__all__ = ["DEFAULT_FACTS", "KNOWN_FACTS", "model_list", "public_model_list"]

KNOWN_FACTS: dict[str, dict[str, Any]] = {
    "gpt-oss-120b": {
        "name": "OpenAI GPT OSS 120B",
        "prompt": "0.00000035",
        "completion": "0.00000075",
        "max_completion_tokens": 40960,
        "structured_outputs": True,
        "reasoning": True,
    },
    "zai-glm-4.7": {
        "name": "Z.ai GLM 4.7",
        "prompt": "0.000002",
        "completion": "0.000003",
        "max_completion_tokens": None,
        "structured_outputs": True,
        "reasoning": True,
        "preview": True,
    },
    "llama3.1-8b": {
        "name": "Llama 3.1 8B",
        "prompt": "0.0000001",
        "completion": "0.0000001",
        "max_completion_tokens": 8192,
        "structured_outputs": True,
        "reasoning": False,
    },
}
DEFAULT_FACTS: dict[str, Any] = {
    "prompt": "0.0000001",
    "completion": "0.0000002",
    "max_completion_tokens": 8192,
    "structured_outputs": True,
    "reasoning": False,
}


def public_model(model: str, config: SimConfig) -> dict[str, Any]:
    """One model of the public list."""
    facts = KNOWN_FACTS.get(model, DEFAULT_FACTS)
    longest = facts["max_completion_tokens"]
    retires = config.deprecated.get(model) or config.retired.get(model)
    return {
        "id": model,
        "object": "model",
        "name": facts.get("name", model),
        "owned_by": "Cerebras",
        "created": 0,
        "capabilities": {
            "structured_outputs": facts["structured_outputs"],
            "reasoning": facts["reasoning"],
            "tools": True,
            "streaming": True,
        },
        "limits": {
            "max_context_length": config.context_length,
            "max_completion_tokens": None
            if longest is None
            else min(longest, config.context_length),
            "requests_per_minute": config.limits.rpm,
            "tokens_per_minute": config.limits.tpm,
        },
        "pricing": {"prompt": facts["prompt"], "completion": facts["completion"]},
        "deprecated": retires is not None,
        "deprecation_date": retires,
        "preview": facts.get("preview", False),
    }


def public_model_list(config: SimConfig) -> dict[str, Any]:
    """`GET /public/v1/models`: the models served, then the retired ones, flagged."""
    models = [*config.models, *(m for m in config.retired if m not in config.models)]
    return {"object": "list", "data": [public_model(m, config) for m in models]}


def model_list(config: SimConfig) -> dict[str, Any]:
    """`GET /v1/models`: what a key may use (no retired model)."""
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": "Cerebras"} for m in config.models
    ]
    return {"object": "list", "data": data}
