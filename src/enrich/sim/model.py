"""Deterministic completions: the simulator's stand-in for a model.

What the model says (a `Generation`) is a pure function of the request. The generation key
hashes everything that would change it (model, messages, sampling parameters such as `seed` and
`temperature`, `response_format`, tools); the parameters that only cut a generation short
(`max_completion_tokens`, `stop`) and transport details (`stream`) are left out, so the same
prompt with a smaller budget yields a prefix of the same text, as a seeded model would.

* Plain text: a natural length of 1..`max_default` tokens of words drawn from a fixed list.
* `json_object`: a small JSON object. `json_schema`: a JSON value that satisfies the schema
  (objects, strings, numbers, integers, booleans, enums, consts, arrays, nullable unions, `$ref`).
* `stop` cuts the text before the first stop sequence (finish_reason "stop"); a budget of
  `max_completion_tokens` truncates it to exactly that many tokens (finish_reason "length"),
  which can leave structured output unparseable, as it does for real.
* A reasoning model (`gpt-oss-*`) first spends some tokens reasoning (`reasoning_tokens`, by
  `reasoning_effort`); they count against the budget, so a budget they use up ends with an
  empty answer and finish_reason "length", billed.
* `spoil` applies the faults that change what is said: a structured answer that is not JSON,
  one cut short, an empty answer after the whole budget went on reasoning.

Tokens are counted with `enrich.tokens`, so a client can predict usage exactly.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from enrich.tokens import CHARS_PER_TOKEN, count_text_tokens

# Fields that only truncate or transport a generation; they do not change what is generated.
_NOT_GENERATIVE = frozenset(
    {
        "stream",
        "stream_options",
        "stop",
        "max_completion_tokens",
        "max_tokens",
        "user",
        "service_tier",
        "prompt_cache_key",
    }
)

_WORD_TEXT = """
    the and for are but not you all any can her was one our out day get has him his how man
    new now old see two way who boy did its let put say she too use data model token batch
    river stone cloud green quick brown lazy bright quiet small large early later north south
    east west table chair window garden market city village forest ocean mountain valley
    summer winter spring autumn morning evening night light dark warm cold fresh clean clear
    simple strong gentle careful rapid steady honest useful happy proud calm brave kind fair
    answer question reason result value number record column field signal report summary
    people family friend teacher student doctor farmer writer reader player driver worker
    build carry change choose create decide deliver describe explain follow gather improve
    measure notice observe prepare protect provide receive remember share support travel
    water bread apple orange lemon coffee paper letter pencil button engine wheel bridge
    road track path door wall roof floor field meadow harbor island desert canyon glacier
    about above across after again against along among around before behind below beside
    between beyond during except inside near since through toward under until within
    always often never rarely seldom usually nearly almost quite rather really very still
    first second third final next last every other such same different certain likely
    """
WORDS: tuple[str, ...] = tuple(dict.fromkeys(_WORD_TEXT.split()))


@dataclass(frozen=True, slots=True)
class Generation:
    """What the model says: the content, why it stopped, and its token counts.

    `completion_tokens` includes `reasoning_tokens`, as the provider counts them.
    """

    content: str
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int = 0


#: How much of `SimConfig.reasoning_tokens` each `reasoning_effort` spends (medium: default).
_EFFORT = {"none": 0.0, "low": 0.5, "medium": 1.0, "high": 2.0}


def reasoning_model(model: str) -> bool:
    """Whether `model` reasons before it answers (and reports reasoning tokens)."""
    return model.startswith("gpt-oss")


def reasoning_spend(request: Mapping[str, Any], per_request: int) -> int:
    """Tokens a request's model spends reasoning: `per_request` scaled by its effort."""
    if not reasoning_model(str(request.get("model", ""))):
        return 0
    effort = request.get("reasoning_effort")
    return int(per_request * _EFFORT.get(effort if isinstance(effort, str) else "medium", 1.0))


def _budget(request: Mapping[str, Any]) -> int | None:
    budget = request.get("max_completion_tokens")
    if budget is None:
        budget = request.get("max_tokens")
    return budget if isinstance(budget, int) and budget >= 0 else None


def generation_key(request: Mapping[str, Any]) -> bytes:
    """A 16-byte digest of the parts of a request that decide what is generated."""
    relevant = {k: v for k, v in request.items() if k not in _NOT_GENERATIVE}
    return hashlib.blake2b(
        orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def request_digest(raw_body: bytes) -> bytes:
    """A 16-byte digest of a request body as sent, to count distinct requests."""
    return hashlib.blake2b(raw_body, digest_size=16).digest()


def generate(
    request: Mapping[str, Any], *, max_default: int, reasoning_tokens: int = 0
) -> Generation:
    """What the model generates for a validated chat request (deterministic).

    A reasoning model spends `reasoning_spend(request, reasoning_tokens)` first, out of the
    budget.
    """
    key = generation_key(request)
    rng = random.Random(int.from_bytes(key, "big"))
    reasoning = reasoning_spend(request, reasoning_tokens)
    budget = _budget(request)
    if budget is not None and reasoning >= budget:
        return Generation("", "length", budget, budget)
    text = _natural_text(request.get("response_format"), rng, max_default)
    finish = "stop"
    stops = request.get("stop")
    if isinstance(stops, str):
        stops = [stops]
    if stops:
        cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
    left = None if budget is None else budget - reasoning
    if left is not None and count_text_tokens(text) >= left:
        text = text[: left * CHARS_PER_TOKEN]
        finish = "length"
    return Generation(text, finish, reasoning + count_text_tokens(text), reasoning)


def spoil(generation: Generation, fault: str, budget: int) -> Generation:
    """`generation` as a fault changes it (`invalid_json`, `truncated_json`,
    `reasoning_starved`); `budget` is what the request allowed for its completion."""
    reasoning = generation.reasoning_tokens
    if fault == "reasoning_starved":
        return Generation("", "length", budget, budget)
    text = generation.content
    if fault == "invalid_json":
        # A trailing comma before the last bracket: JSON in every way but one.
        cut = max(text.rfind("}"), text.rfind("]"))
        text = text[:cut] + "," + text[cut:] if cut > 0 else text + ","
        return Generation(text, "stop", reasoning + count_text_tokens(text), reasoning)
    if fault == "truncated_json":
        text = text[: max(1, len(text) // 2)]
        return Generation(text, "length", reasoning + count_text_tokens(text), reasoning)
    return generation


def reasoning_text(generation: Generation) -> str:
    """The reasoning a generation spent its reasoning tokens on, as text (deterministic)."""
    words = "Weighing the request before answering. "
    size = generation.reasoning_tokens * CHARS_PER_TOKEN
    return (words * (size // len(words) + 1))[:size]


def chunk_content(content: str, tokens_per_chunk: int = 4) -> list[str]:
    """Split content into stream deltas of a few tokens each."""
    size = tokens_per_chunk * CHARS_PER_TOKEN
    return [content[i : i + size] for i in range(0, len(content), size)]


def _natural_text(response_format: object, rng: random.Random, max_default: int) -> str:
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_schema" and isinstance(response_format, Mapping):
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        root = schema if isinstance(schema, Mapping) else {}
        return orjson.dumps(fake_json(root, rng, root)).decode()
    if kind == "json_object":
        return orjson.dumps({"answer": _phrase(rng, 2, 6), "score": rng.randint(0, 100)}).decode()
    return _words(rng, 1 + rng.randrange(max_default))


def _words(rng: random.Random, tokens: int) -> str:
    """Whole words adding up to at least `tokens` tokens, capitalised, ending with a period."""
    # Every word has >= 3 letters, so `tokens` words (plus spaces) always cover 4 chars a token.
    words = rng.choices(WORDS, k=tokens)
    text = " ".join(words)
    limit = tokens * CHARS_PER_TOKEN - 1
    if len(text) > limit:
        end = text.find(" ", limit)
        text = text if end < 0 else text[:end]
    return text[0].upper() + text[1:] + "."


def _phrase(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


_NULL_SHARE = 0.2


def fake_json(
    schema: Mapping[str, Any], rng: random.Random, root: Mapping[str, Any], depth: int = 0
) -> Any:
    """A value that satisfies `schema` (the common subset structured outputs use)."""
    if depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return fake_json(_resolve(ref, root), rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, Sequence) and not isinstance(enum, str) and enum:
        return enum[rng.randrange(len(enum))]
    for union in ("anyOf", "oneOf"):
        options = schema.get(union)
        if isinstance(options, Sequence) and options:
            non_null = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            if len(non_null) < len(options) and rng.random() < _NULL_SHARE:
                return None  # a nullable field is sometimes null, as a model leaves it
            return fake_json(rng.choice(non_null) if non_null else options[0], rng, root, depth + 1)
    parts = schema.get("allOf")
    if isinstance(parts, Sequence) and parts:
        merged: dict[str, Any] = {}
        for part in parts:
            if isinstance(part, Mapping):
                merged.update(part)
        merged.pop("allOf", None)
        return fake_json(merged, rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {
            name: fake_json(sub, rng, root, depth + 1)
            for name, sub in props.items()
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        items = schema.get("items")
        fewest = int(schema.get("minItems", 1))
        most = int(schema.get("maxItems", max(fewest, 3)))
        fewest = min(fewest, most)
        count = rng.randint(fewest, max(fewest, min(most, fewest + 2)))
        sub = items if isinstance(items, Mapping) else {"type": "string"}
        return [fake_json(sub, rng, root, depth + 1) for _ in range(count)]
    if kind == "integer":
        low, high = _bounds(schema, 0, 100)
        return rng.randint(int(low), int(high)) if low <= high else int(low)
    if kind == "number":
        low, high = _bounds(schema, 0.0, 100.0)
        return round(rng.uniform(low, high), 2) if low < high else float(low)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else []:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _bounds(schema: Mapping[str, Any], low: float, high: float) -> tuple[float, float]:
    if isinstance(schema.get("minimum"), int | float):
        low = schema["minimum"]
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + 1
    if isinstance(schema.get("maximum"), int | float):
        high = schema["maximum"]
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = schema["exclusiveMaximum"] - 1
    if high < low:
        high = low + 100 if "maximum" not in schema and "exclusiveMaximum" not in schema else high
    return low, high


def _string(schema: Mapping[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return f"{day}T{rng.randint(0, 23):02d}:00:00Z"
    if fmt == "email":
        return f"{rng.choice(WORDS)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(WORDS)}"
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    text = _phrase(rng, 1, 4)
    min_len, max_len = schema.get("minLength"), schema.get("maxLength")
    if isinstance(min_len, int) and len(text) < min_len:
        text = (text + " " + "x" * min_len)[:min_len]
    if isinstance(max_len, int) and len(text) > max_len:
        text = text[:max_len]
    return text
