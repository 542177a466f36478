"""cerebras-enrich: enrich datasets with Cerebras chat completions."""

__version__ = "0.1.0"
