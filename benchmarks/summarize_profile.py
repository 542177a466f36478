"""Summarise a py-spy raw (collapsed stacks) profile: inclusive and self share per function.

    .venv/bin/python benchmarks/summarize_profile.py pipeline.txt --within run_forever --top 40

``--within`` keeps only samples whose stack contains that text (default: the event loop, which
leaves out interpreter start-up and the input preparation before the run).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_LINE = re.compile(r":\d+\)")


def summarize(path: str, within: str, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
            if within and not any(within in frame for frame in frames):
                continue
            n = int(count)
            total += n
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
    out = [f"{total} samples within {within!r}", "", "inclusive:"]
    out += [f"{100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"{100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--within", default="run_forever")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    print(summarize(args.path, args.within, args.top))
