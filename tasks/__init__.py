"""Prefect task adapters over the engine (thin: naming, retries, logging)."""
