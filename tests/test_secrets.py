"""Secrets cannot be aimed elsewhere: who may set the endpoint, where the key may be sent, what
error messages may show.

- a run's overrides (a flow's parameters, ``--set``) never touch the ``api`` section;
- a base URL is https, loopback, or explicitly allowed by the job file;
- credentials in URL query strings and in nested storage options are redacted;
- an unexpected error reaches the command line user as one line, the traceback only with
  ``--debug`` and never with the frames' local variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from typer.testing import CliRunner

from enrich.cli import app as engine_app
from enrich.config import load_job_config
from enrich.config.guard import api_overrides, insecure_reason, refuse_api_overrides
from enrich.config.schema import ApiSpec
from enrich.errors import ConfigError
from enrich.storage.errors import redact_secrets, secrets_in

pytest_plugins = ["prefect_harness"]

DAILY = "configs/reviews_daily.yaml"
JOB = """\
input: {path: data/in.jsonl}
prompt: {template: "{text}"}
model: m
output: {path: out}
"""


def write_job(tmp_path: Path, api: str = "") -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB + (f"api: {api}\n" if api else ""), encoding="utf-8")
    return path


# --- a. a run's overrides never touch the api section ---------------------------------------


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ([], []),
        (["execution.max_concurrency=8", "model=x"], []),
        (["api.base_url=https://elsewhere.example"], ["api.base_url"]),
        (["api.api_key_env=HOME"], ["api.api_key_env"]),
        (["api.secret_block=someone-elses-key"], ["api.secret_block"]),
        (["api.allow_insecure=true"], ["api.allow_insecure"]),
        (["api={base_url: https://elsewhere.example}"], ["api"]),
        ([" api.base_url =https://x"], ["api.base_url"]),
        (["apis.x=1", "params.api=1"], []),
        ({"api.base_url": "https://x", "model": "m"}, ["api.base_url"]),
        ({"api": {"secret_block": "b"}}, ["api"]),
    ],
)
def test_which_overrides_touch_the_api_section(
    overrides: list[str] | dict[str, Any], refused: list[str]
) -> None:
    assert api_overrides(overrides) == refused


def test_an_api_override_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        refuse_api_overrides(["model=m", "api.base_url=https://x"], "configs/job.yaml")
    message = str(caught.value)
    assert message.startswith("configs/job.yaml: override api.base_url: refused")
    assert "\n" not in message


def test_the_command_line_refuses_an_api_override(tmp_path: Path) -> None:
    config = write_job(tmp_path)
    for command in (["plan"], ["run", "--direct"], ["partitions"]):
        args = [*command, str(config), "--set", "api.base_url=https://elsewhere.example"]
        result = CliRunner().invoke(engine_app, args)
        assert result.exit_code == 2, result.output
        assert f"{config}: override api.base_url: refused" in result.output


@pytest.mark.prefect
@pytest.mark.slow
async def test_a_flow_run_refuses_an_api_override_before_sending(
    prefect_server: Any, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enrich_flows.enrich import enrich_dataset
    from enrich_flows.incremental import enrich_incremental

    monkeypatch.chdir(ROOT)
    for key, value in [
        ("api.base_url", "https://collector.example"),
        ("api.api_key_env", "HOME"),
        ("api.secret_block", "someone-elses-key"),
    ]:
        overrides = [f"output.path={tmp_path}/daily", f"{key}={value}"]
        state = await enrich_dataset(DAILY, overrides, "2026-11-22", return_state=True)
        assert state.is_failed()
        assert f"{DAILY}: override {key}: refused" in str(state.message)
        later = await enrich_incremental(
            DAILY, date="2026-11-22", overrides=overrides, return_state=True
        )
        assert later.is_failed()
        assert f"{DAILY}: override {key}: refused" in str(later.message)
    assert sim.stats.requests == 0
    assert not (tmp_path / "daily").exists()


# --- b. the key goes over https, to loopback, or where the job file allows ------------------


@pytest.mark.parametrize(
    ("url", "allow_insecure", "refused"),
    [
        ("https://api.cerebras.ai", False, None),
        ("HTTPS://api.cerebras.ai/v1", False, None),
        ("http://127.0.0.1:8000", False, None),
        ("http://127.8.9.10:8000", False, None),
        ("http://localhost:8000", False, None),
        ("http://LOCALHOST", False, None),
        ("http://[::1]:8000", False, None),
        ("http://api.cerebras.ai", False, "clear text"),
        ("http://10.0.0.5:8000", False, "clear text"),
        ("http://localhost.evil.example", False, "clear text"),
        ("http://127.0.0.1.nip.io", False, "clear text"),
        ("http://[::2]:8000", False, "clear text"),
        ("http://sim:8000", True, None),
        ("ftp://127.0.0.1", True, "https://"),
        ("api.cerebras.ai", False, "https://"),
        ("https://", False, "https://"),
        ("http://[::1", False, "not a valid URL"),
    ],
)
def test_where_the_key_may_be_sent(url: str, allow_insecure: bool, refused: str | None) -> None:
    reason = insecure_reason(url, allow_insecure=allow_insecure)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


@pytest.mark.parametrize(
    ("api", "refused"),
    [
        ("{base_url: 'http://collector.example'}", "http to collector.example"),
        ("{base_url: 'ftp://collector.example', allow_insecure: true}", "https://"),
        ("{base_url: 'http://collector.example', allow_insecure: true}", None),
        ("{base_url: 'http://127.0.0.1:8000'}", None),
        ("{base_url: 'https://collector.example'}", None),
    ],
)
def test_a_job_file_base_url_is_checked_when_loading(
    tmp_path: Path, api: str, refused: str | None
) -> None:
    config = write_job(tmp_path, api)
    if refused is None:
        load_job_config(config)
        return
    with pytest.raises(ConfigError) as caught:
        load_job_config(config)
    message = str(caught.value)
    assert message.startswith(f"{config}: api.base_url: ")
    assert refused in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "allow_insecure", "refused"),
    [
        ("http://collector.example:8000", False, True),
        ("http://collector.example:8000", True, False),
        ("http://127.0.0.1:8000", False, False),
        ("https://collector.example", False, False),
    ],
)
def test_the_environment_base_url_is_checked_before_use(
    url: str, allow_insecure: bool, refused: bool
) -> None:
    api = ApiSpec(allow_insecure=allow_insecure)
    if not refused:
        assert api.resolve_base_url({"CEREBRAS_BASE_URL": url}) == url
        return
    with pytest.raises(ConfigError, match=r"^CEREBRAS_BASE_URL: http to collector\.example"):
        api.resolve_base_url({"CEREBRAS_BASE_URL": url})


def test_an_insecure_base_url_fails_the_run_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.jsonl").write_text('{"text": "hi"}\n', encoding="utf-8")
    config = write_job(tmp_path, "{base_url: 'http://collector.example:9'}")
    env = {**os.environ, "CEREBRAS_API_KEY": "csk-never-sent"}
    done = subprocess.run(
        [sys.executable, "-m", "enrich.cli", "run", "--direct", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{config}: api.base_url: http to collector.example" in done.stderr
    assert not (tmp_path / "out").exists()


# --- c. redaction: query strings and nested options -----------------------------------------


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAEXAMPLE%2F20261202&X-Amz-Signature=0123abcd&x-id=GetObject",
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=***&X-Amz-Signature=***&x-id=GetObject",
        ),
        (
            "https://acct.blob.core.windows.net/c/f?sv=2022-11-02&sig=Zm9vYmFy%3D (403)",
            "https://acct.blob.core.windows.net/c/f?sv=2022-11-02&sig=*** (403)",
        ),
        ("GET http://h/p?token=abc123&page=2 failed", "GET http://h/p?token=***&page=2 failed"),
        ("http://h/p?api_key=abc123#top", "http://h/p?api_key=***#top"),
        ("http://h/p?key=abc123;access_token=xyz", "http://h/p?key=***;access_token=***"),
        ("http://h/p?X-Goog-Signature=f00d", "http://h/p?X-Goog-Signature=***"),
        ("s3://AKIA:hunter22@bucket/k?page=1", "s3://***@bucket/k?page=1"),
        ("http://h/p?page=2&sort=name", "http://h/p?page=2&sort=name"),
        ("is it?token= empty", "is it?token= empty"),
    ],
)
def test_credentials_in_url_query_strings_are_redacted(text: str, redacted: str) -> None:
    assert redact_secrets(text) == redacted


@pytest.mark.parametrize(
    ("options", "secrets"),
    [
        ({"key": "AKIAEXAMPLE", "secret": "s3cr3t-value"}, ["AKIAEXAMPLE", "s3cr3t-value"]),
        (
            {"client_kwargs": {"headers": {"Authorization": "Bearer tok-123456"}}},
            ["Bearer tok-123456", "tok-123456"],
        ),
        ({"client_kwargs": {"headers": {"X-Api-Key": "k-998877"}}}, ["k-998877"]),
        (
            {"headers": [["Authorization", "Basic dXNlcjpwdw=="]]},
            ["Basic dXNlcjpwdw==", "dXNlcjpwdw=="],
        ),
        ({"headers": [("Cookie", "session=abcdef")]}, ["session=abcdef"]),
        (
            {"credentials": {"client_id": "app-1234", "value": "cred-5678"}},
            ["app-1234", "cred-5678"],
        ),
        ({"config_kwargs": {"retries": {"max_attempts": 5}}, "anon": False}, []),
        ({"endpoint_url": "http://127.0.0.1:5000", "region": "us-east-1"}, []),
        ({"token": "abc"}, []),  # too short to be a credential, and to replace safely
        (None, []),
    ],
)
def test_credentials_at_any_depth_of_the_storage_options(
    options: dict[str, Any] | None, secrets: list[str]
) -> None:
    assert secrets_in(options) == secrets


def test_a_header_credential_never_shows_in_a_message() -> None:
    options = {"client_kwargs": {"headers": {"Authorization": "Bearer tok-123456"}}}
    text = "request with Authorization: Bearer tok-123456 denied (token tok-123456)"
    assert redact_secrets(text, options) == "request with Authorization: *** denied (token ***)"


# --- d. an unexpected error is one line; --debug shows the traceback, never the locals ------

# Binding the simulator to a port that does not exist fails inside the socket library: an error
# no command expects.
NO_SUCH_PORT = ["sim", "--port", "99999999"]


def enrich(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "enrich.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unexpected_error_is_one_line() -> None:
    done = enrich(*NO_SUCH_PORT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: OverflowError: bind(): port must be 0-65535."
    ]
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback_without_locals() -> None:
    done = enrich("--debug", *NO_SUCH_PORT)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "OverflowError" in done.stderr
    assert "locals" not in done.stderr


def test_run_takes_debug_too(tmp_path: Path) -> None:
    config = write_job(tmp_path)  # its input does not exist: an error the command expects
    done = enrich("run", "--direct", "--debug", str(config))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()  # expected errors stay one line, even with --debug
    assert line.startswith("error: ") and "Traceback" not in done.stderr
