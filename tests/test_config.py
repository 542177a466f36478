"""Job config: loading, defaults, overrides and one-line errors."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from enrich.config import load_job_config
from enrich.config.schema import ApiSpec, ModelParams
from enrich.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """\
input:
  path: data/in.jsonl
prompt:
  template: "Classify: {text}"
model: gpt-oss-120b
output:
  path: out/x
"""

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    def write(text: str = MINIMAL, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def test_minimal_config_gets_defaults(write_config: WriteConfig) -> None:
    config = load_job_config(write_config(name="my-job_1.yaml"))
    assert config.name == "my-job_1"
    assert config.input.path == "data/in.jsonl"
    assert config.input.format is None
    assert config.prompt.system is None
    assert config.params == ModelParams()
    assert config.params.max_completion_tokens == 256
    assert config.output.format == "parquet"
    assert config.output.completion_column == "completion"
    assert config.execution.rows_per_chunk is None  # chosen from the limits: 1,000 here
    assert config.execution.retry.attempts == 6
    assert config.execution.requests_per_minute is None
    assert config.pricing.input_per_million is None  # from the model catalogue
    assert config.api.api_key_env == "CEREBRAS_API_KEY"


def test_explicit_name_wins_over_file_stem(write_config: WriteConfig) -> None:
    config = load_job_config(write_config(MINIMAL + "name: other\n"))
    assert config.name == "other"


def test_example_job_in_repo_is_valid() -> None:
    config = load_job_config(REPO / "configs" / "reviews.yaml")
    assert config.name == "reviews"
    assert config.input.id_column == "review_id"
    assert config.model == "gpt-oss-120b"
    # Two typed steps, with room for a reasoning model's reasoning at low effort.
    assert [s.name for s in config.steps or ()] == ["triage", "summary"]
    assert config.params.max_completion_tokens == 400
    assert config.params.temperature == 0
    assert config.execution.requests_per_minute == 1000
    assert config.pricing.output_per_million is None  # the catalogue's price


@pytest.mark.parametrize(
    ("override", "attribute", "expected"),
    [
        ("execution.max_concurrency=128", "execution.max_concurrency", 128),
        ("execution.requests_per_minute=30", "execution.requests_per_minute", 30.0),
        ("execution.tokens_per_minute=1.5e+6", "execution.tokens_per_minute", 1_500_000.0),
        ("execution.tokens_per_minute=1e6", "execution.tokens_per_minute", 1_000_000.0),
        ("execution.adaptive_limits=false", "execution.adaptive_limits", False),
        ("execution.retry.attempts=2", "execution.retry.attempts", 2),
        ('params.stop=["a","b"]', "params.stop", ["a", "b"]),
        ("params.stop=END", "params.stop", "END"),
        ("params.temperature=0", "params.temperature", 0.0),
        ("params.seed=null", "params.seed", None),
        ("model=zai-glm-4.7", "model", "zai-glm-4.7"),
        ("input.path=s3://bucket/in/*.parquet", "input.path", "s3://bucket/in/*.parquet"),
        ("output.path=memory://out", "output.path", "memory://out"),
        ("input.columns=[a, b]", "input.columns", ["a", "b"]),
        ("input.storage_options.anon=true", "input.storage_options", {"anon": True}),
        # text fields take the text verbatim, even when it would parse as other YAML
        ("prompt.template={text}", "prompt.template", "{text}"),
        ("prompt.template=Classify: {text}", "prompt.template", "Classify: {text}"),
        ("prompt.system='quoted: yes'", "prompt.system", "quoted: yes"),
        ("name=123", "name", "123"),
        ("api.base_url=http://localhost:8000", "api.base_url", "http://localhost:8000"),
        ("prompt.template=a=b", "prompt.template", "a=b"),
    ],
)
def test_string_overrides_are_typed(
    write_config: WriteConfig, override: str, attribute: str, expected: Any
) -> None:
    value: Any = load_job_config(write_config(), [override])
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected
    assert type(value) is type(expected)


def test_mapping_overrides_take_values_as_given(write_config: WriteConfig) -> None:
    config = load_job_config(
        write_config(), {"execution.max_concurrency": 8, "prompt.system": "Be brief."}
    )
    assert config.execution.max_concurrency == 8
    assert config.prompt.system == "Be brief."


def test_override_creates_missing_sections(write_config: WriteConfig) -> None:
    config = load_job_config(write_config(MINIMAL + "params:\n"), ["params.seed=1"])
    assert config.params.seed == 1
    config = load_job_config(write_config(), ["execution.retry.attempts=1"])
    assert config.execution.retry.attempts == 1


# What a file says wrong, and the error's message (after the file's directory).
FILE_ERRORS = [
    (
        MINIMAL + "execution:\n  max_concurency: 4\n",
        "job.yaml: execution.max_concurency: unknown key (did you mean 'max_concurrency'?)",
    ),
    (MINIMAL + "colour: red\n", "job.yaml: colour: unknown key"),
    (
        MINIMAL + "params:\n  temperature: 3\n",
        "job.yaml: params.temperature: Input should be less than or equal to 2",
    ),
    ("input: [1, 2\n", "job.yaml:2: invalid YAML"),
    ("- a\n- b\n", "job.yaml: expected a mapping of keys at the top level"),
    ("", "job.yaml: the file is empty"),
    (MINIMAL + "execution: 5\n", "job.yaml: execution: Input should be"),
]
# What an override of a good file says wrong, and the error's message.
OVERRIDE_ERRORS = {
    "execution.max_concurrency=lots": "job.yaml: execution.max_concurrency: Input should be a "
    "valid integer, unable to parse string as an integer (set by an override)",
    "params.stop=[a, b, c, d, e]": "job.yaml: params.stop: must be a string or a list of at "
    "most 4 strings",
    "params.stop=[1]": "job.yaml: params.stop: must be a string",
    "execution.rows_per_chunk=0": "job.yaml: execution.rows_per_chunk: ",
    "execution.rows_per_chunk=many": "job.yaml: execution.rows_per_chunk: 'many': expected a "
    "number of rows or 'auto'",
    "execution.retry.backoff_max=0.1": "job.yaml: execution.retry: backoff_max must be at least "
    "backoff_initial",
    "name=Bad Name": "job.yaml: name: 'Bad Name' must be lowercase",
    "prompt.template=Hi {row.text}": "job.yaml: prompt.template: field {row.text}: only bare "
    "column names are supported",
    "prompt.system=You review {product}": "job.yaml: prompt.system: field {product}: the system "
    "message is static text",
    "model": "job.yaml: override 'model': expected KEY.PATH=VALUE",
    "=x": "job.yaml: override '=x': expected KEY.PATH=VALUE",
    "a..b=1": "job.yaml: override 'a..b': empty key in the path",
    "model.name=x": "job.yaml: override 'model.name': model is not a mapping",
}


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [(text, [], message) for text, message in FILE_ERRORS]
    + [(MINIMAL, [override], message) for override, message in OVERRIDE_ERRORS.items()],
)
def test_errors_are_one_line_naming_file_and_key(
    write_config: WriteConfig, text: str, overrides: list[str], message: str
) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_job_config(path, overrides)
    assert str(info.value).startswith(f"{path.parent}/{message}")
    assert "\n" not in str(info.value)


def test_missing_template_is_named(write_config: WriteConfig) -> None:
    path = write_config(MINIMAL.replace('  template: "Classify: {text}"\n', "  system: hi\n"))
    with pytest.raises(ConfigError, match=r"job\.yaml: prompt\.template: field required$"):
        load_job_config(path)


def test_several_errors_report_the_first_and_a_count(write_config: WriteConfig) -> None:
    path = write_config(MINIMAL + "params:\n  temperature: 3\n  top_p: 2\n")
    with pytest.raises(ConfigError, match=r"params\.temperature: .* \(and 1 more\)$"):
        load_job_config(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file$"):
        load_job_config(tmp_path / "nope.yaml")


def test_file_stem_that_is_not_a_slug_needs_an_explicit_name(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"My Job\.yaml: name: 'My Job' must be lowercase"):
        load_job_config(write_config(name="My Job.yaml"))
    assert load_job_config(write_config(name="My Job.yaml"), ["name=my-job"]).name == "my-job"


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {"max_completion_tokens": 256, "stream": False}),
        (
            {"temperature": 0, "top_p": 0.9, "stop": ["\n"], "seed": 7, "reasoning_effort": "low"},
            {
                "temperature": 0.0,
                "top_p": 0.9,
                "max_completion_tokens": 256,
                "stop": ["\n"],
                "seed": 7,
                "reasoning_effort": "low",
                "stream": False,
            },
        ),
        (
            {"max_completion_tokens": 64, "stream": True},
            {"max_completion_tokens": 64, "stream": True},
        ),
    ],
)
def test_request_fields_are_the_set_params(params: dict[str, Any], fields: dict[str, Any]) -> None:
    assert ModelParams(**params).request_fields() == fields


@pytest.mark.parametrize(
    ("base_url", "environ", "expected"),
    [
        (None, {}, None),
        (None, {"CEREBRAS_BASE_URL": "https://sim:8000"}, "https://sim:8000"),
        ("https://cfg", {"CEREBRAS_BASE_URL": "https://sim:8000"}, "https://cfg"),
        (None, {"CEREBRAS_BASE_URL": ""}, None),
    ],
)
def test_base_url_prefers_config_then_environment(
    base_url: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert ApiSpec(base_url=base_url).resolve_base_url(environ) == expected


def test_models_are_frozen(write_config: WriteConfig) -> None:
    config = load_job_config(write_config())
    with pytest.raises(ValueError, match="frozen"):
        config.model = "x"
    assert config.model == "gpt-oss-120b"  # the refused assignment left it as loaded
