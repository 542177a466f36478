"""Helpers the tests share, importable as ``support`` (``tests/`` is on ``pythonpath``).

Fixtures stay in ``conftest.py`` and are built from these. One module per concern:

* :mod:`support.jobs` -- input rows, a job config on a location, preparing and running it.
* :mod:`support.datasets` -- reading a job's output for assertions.
* :mod:`support.simulators` -- a simulator with given settings, the SDK pointed at it.
* :mod:`support.completions` -- answers a ``FakeCompleter`` gives in place of the API.
* :mod:`support.clocks` -- a fake clock (and its sleep) for the time-driven cores, and an event
  loop on virtual time for whole concurrent systems.
* :mod:`support.counting` -- a local filesystem (``counted://``) that counts reads per file.
* :mod:`support.storage` -- a moto S3 server in a child process, and ``Location`` roots on the
  file, memory and s3 backends.
* :mod:`support.processes` -- free ports, child processes in their own process group,
  waiting for a server in one to answer, the ``enrich`` command in a child.
* :mod:`support.quota` -- whether arrivals kept to a per-minute quota (windows, a bucket).
* :mod:`support.servers` -- a throwaway HTTP server answering every request with one handler.
* :mod:`support.waiting` -- polling until a condition holds (never sleeping a fixed time).
"""

from support.clocks import FakeClock, VirtualTimeLoop, run_virtual
from support.completions import answer, user_text
from support.counting import CountingFileSystem, counting_reads
from support.datasets import by_row
from support.jobs import (
    API_KEY,
    ROOT,
    JobFactory,
    Ran,
    job_on,
    job_reading,
    job_writer,
    jsonl_bytes,
    prepare_job,
    review_rows,
    run_config,
    write_jsonl,
)
from support.processes import (
    free_port,
    run_enrich,
    start_process,
    stop_process,
    wait_for_http,
)
from support.quota import allowance, overdraft, window_peak
from support.servers import serving
from support.simulators import point_sdk_at, simulator
from support.storage import AWS_ENV, AWS_UNSET, Location, MotoServer, make_location
from support.waiting import DEADLINE_S, eventually, until

__all__ = [
    "API_KEY",
    "AWS_ENV",
    "AWS_UNSET",
    "DEADLINE_S",
    "ROOT",
    "CountingFileSystem",
    "FakeClock",
    "JobFactory",
    "Location",
    "MotoServer",
    "Ran",
    "VirtualTimeLoop",
    "allowance",
    "answer",
    "by_row",
    "counting_reads",
    "eventually",
    "free_port",
    "job_on",
    "job_reading",
    "job_writer",
    "jsonl_bytes",
    "make_location",
    "overdraft",
    "point_sdk_at",
    "prepare_job",
    "review_rows",
    "run_config",
    "run_enrich",
    "run_virtual",
    "serving",
    "simulator",
    "start_process",
    "stop_process",
    "until",
    "user_text",
    "wait_for_http",
    "window_peak",
    "write_jsonl",
]
