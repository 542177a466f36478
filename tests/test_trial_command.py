"""``enrich try`` as a person runs it: the tables, the HTML and JSON reports, the errors.

Two variants (a YAML file with its own output, and ``model=...`` overrides of the job) on the
same sample, graded against a gold column; the full run of a variant then sends only the rows
the sample did not (counted at the simulator).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import yaml
from support import JobFactory, review_rows, run_enrich

from enrich.sim.harness import ThreadedSimulator

SCHEMA = {"sentiment": "enum[positive, negative, mixed]", "score": "int"}


def typed_job(make_job: JobFactory, tmp_path: Path, rows: int) -> tuple[Path, Path]:
    """A typed job over ``rows`` reviews with a gold ``label``, and a variant of it."""
    data = [
        {**r, "label": ("positive", "negative", "mixed")[i % 3]}
        for i, r in enumerate(review_rows(rows))
    ]
    prompt = {"system": "Label the review.", "template": "{text}", "output_schema": SCHEMA}
    config = make_job(data, prompt=prompt, params={"max_completion_tokens": 200})
    spec: dict[str, Any] = yaml.safe_load(config.read_text())
    spec["name"] = "terse"
    spec["prompt"]["system"] = "Label the review, tersely."
    spec["output"]["path"] = str(tmp_path / "out-terse")
    variant = tmp_path / "terse.yaml"
    variant.write_text(yaml.safe_dump(spec))
    return config, variant


def test_try_compares_variants_and_the_full_run_skips_the_sample(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    config, variant = typed_job(make_job, tmp_path, 50)
    html, data = tmp_path / "report.html", tmp_path / "report.json"
    result = run_enrich(
        "try", str(config), "--sample", "12", "--stratify", "rating",
        "--variant", str(variant), "--variant", "model=zai-glm-4.7",
        "--gold", "label=sentiment", "--html", str(html), "--json", str(data),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sim.stats.requests == 36  # 12 rows, 3 variants
    out = result.stdout
    for heading in ("example rows", "figures", "distributions", "agreement"):
        assert heading in out
    assert "12 of 50 rows" in out and "stratified by rating" in out
    assert re.search(r"rows ok\s+│ 12 of 12", out)
    assert "accuracy: sentiment = label" in out

    comparison = orjson.loads(data.read_bytes())
    assert [v["label"] for v in comparison["variants"]] == ["job", "terse", "model=zai-glm-4.7"]
    assert [v["model"] for v in comparison["variants"]][2] == "zai-glm-4.7"
    assert sorted(comparison["agreement"]) == ["score", "sentiment"]
    assert comparison["agreement"]["sentiment"][0] is None
    assert all(0 <= a <= 1 for a in comparison["accuracy"])
    sentiments = comparison["variants"][0]["distributions"]["sentiment"]
    assert sum(sentiments.values()) == 12
    projected = comparison["variants"][1]["projection"]
    assert projected["rows"] == 50 and projected["rows_to_send"] == 38

    page = html.read_text()
    assert "<script" not in page and not re.search(r"(src|href)=", page)
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 5  # cost, tokens, latency, and the two fields
    for svg in svgs:
        ET.fromstring(svg)  # well-formed

    sim.reset()
    ran = run_enrich("run", str(variant), "--direct")
    assert ran.returncode == 0, ran.stderr
    assert sim.stats.requests == 50 - 12


def test_try_refuses_bad_options_before_sending(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    config, variant = typed_job(make_job, tmp_path, 10)
    other_input = tmp_path / "other.yaml"
    spec = yaml.safe_load(variant.read_text())
    spec["input"]["path"] = str(tmp_path / "elsewhere.jsonl")
    other_input.write_text(yaml.safe_dump(spec))
    same_output = tmp_path / "same-output.yaml"
    spec = yaml.safe_load(variant.read_text())
    spec["output"]["path"] = str(tmp_path / "out")
    same_output.write_text(yaml.safe_dump(spec))
    for args, message in [
        (["--stratify", "colour"], "--stratify colour: the input has no such column"),
        (["--gold", "label=mood"], "--gold label=mood: no field 'mood'"),
        (["--gold", "verdict"], "--gold verdict: say which field it grades"),
        (["--variant", str(other_input)], "input differs from"),
        (["--variant", str(same_output)], "is job 'job''s too"),
        (["--variant", "api.base_url=http://x"], "api"),
    ]:
        result = run_enrich("try", str(config), "--html", str(tmp_path / "r.html"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
    assert sim.stats.requests == 0
