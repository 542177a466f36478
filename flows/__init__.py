"""The Prefect flows (the entrypoints prefect.yaml deploys) and what runs them: the ``enrich``
command (:mod:`enrich_flows.cli`), the demo and scenario e of ``enrich bench``.

This folder installs as the package ``enrich_flows``; it imports ``enrich_tasks`` and ``enrich``,
never the other way round.
"""
