"""The variants of ``enrich try``: the job, and each ``--variant`` (a YAML file or overrides).

A variant is a whole job: a YAML file of its own (its name, prompt, model and output), or the
base config with ``KEY=VALUE`` overrides (``model=zai-glm-4.7``; several joined by commas),
which keeps the base's name and output. Every variant must read the same input (the rows are
the same sample), and two jobs of different names never share an output (the owner of an
output is one job, :mod:`enrich.output.owner`). ``--set`` applies to every variant. A sample
run never stops for its error rows (``execution.max_error_share`` is 1): their rate is what
the comparison is for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enrich.config import JobConfig, load_job_config, refuse_api_overrides
from enrich.errors import ConfigError
from enrich.job import Job
from enrich.partitions import for_partition

__all__ = ["Variant", "load_variants", "prepare_variants", "split_overrides"]

#: What a sample run overrides: its error rows are measured, never a reason to stop.
SAMPLE_OVERRIDES = ("execution.max_error_share=1",)
_NEXT_KEY = re.compile(r",(?=\s*[A-Za-z_][\w.]*=)")


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant: its label in the comparison, where it came from, its config."""

    label: str
    source: str
    config: JobConfig


def split_overrides(text: str) -> list[str]:
    """``model=a,params.temperature=0.5`` as ``["model=a", "params.temperature=0.5"]`` (a
    comma not followed by ``KEY=`` stays in its value)."""
    return [part.strip() for part in _NEXT_KEY.split(text) if part.strip()]


def _is_overrides(text: str) -> bool:
    return "=" in text and not Path(text).exists()


def load_variants(
    config: str,
    variants: Sequence[str],
    overrides: Sequence[str] = (),
    partition: str | None = None,
) -> list[Variant]:
    """The base job and each variant, loaded and checked against each other (one-line errors
    naming the variant)."""

    def load(path: str, extra: Sequence[str]) -> JobConfig:
        given = [*overrides, *extra]
        refuse_api_overrides(given, path)
        return for_partition(load_job_config(path, [*given, *SAMPLE_OVERRIDES]), partition)

    base = load(config, ())
    loaded = [Variant(base.name, config, base)]
    for text in variants:
        if _is_overrides(text):
            loaded.append(Variant(text, config, load(config, split_overrides(text))))
        else:
            cfg = load(text, ())
            label = cfg.name if cfg.name != base.name else Path(text).stem
            loaded.append(Variant(label, text, cfg))
    labels = [v.label for v in loaded]
    for i, variant in enumerate(loaded):
        if labels.index(variant.label) != i:
            raise ConfigError(
                f"--variant {variant.source}: a second variant named {variant.label!r}"
            )
        _check_pair(loaded[0], variant)
        for other in loaded[:i]:
            same_place = other.config.output.path == variant.config.output.path
            if same_place and other.config.name != variant.config.name:
                raise ConfigError(
                    f"{variant.source}: output.path {variant.config.output.path} is job "
                    f"{other.config.name!r}'s too ({other.source}); give each job its own"
                )
    return loaded


def _check_pair(base: Variant, variant: Variant) -> None:
    if variant.config.input != base.config.input:
        raise ConfigError(
            f"{variant.source}: input differs from {base.source}'s; variants are compared on "
            "the same rows, so their input sections must be the same"
        )


def prepare_variants(variants: Sequence[Variant]) -> list[Job]:
    """Each variant's job, prepared (every check before anything is sent)."""
    return [Job.prepare(v.config, where=v.source) for v in variants]
