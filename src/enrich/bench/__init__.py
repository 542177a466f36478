"""``enrich bench``: the pipeline against a bare SDK loop, on the simulator, side by side.

* :mod:`enrich.bench.scenarios` -- the five scenarios (a-e) and their targets.
* :mod:`enrich.bench.quota` -- scenarios b and c, measured over a window.
* :mod:`enrich.bench.outcome` -- sizes, and what a scenario returns.
* :mod:`enrich.bench.sides` -- the two sides: the pipeline (``run_job``) and the bare loop.
* :mod:`enrich.bench.measure` -- rates over a window, from the simulator's sampled counters.
* :mod:`enrich.sim.process` (elsewhere) -- the simulator as a child process (its CPU is not ours).
* :mod:`enrich.bench.workload` -- the generated input and its job config.
* ``enrich_flows.flowcost`` (the flows layer) -- scenario e in a child process (it imports Prefect).
* :mod:`enrich.bench.report` -- the table, the JSON document and the machine description.
"""
