"""Prefect task adapters over the engine (thin: naming, retries, logging).

This folder installs as the package ``enrich_tasks``; it imports ``enrich``, never the flows.
"""
