"""``enrich try``: a job run on a deterministic sample of its rows, variants side by side.

:mod:`.sample` picks the rows (pure) and reads only them; :mod:`.session` runs a job on them
through the engine, journaling every result under the job's own output (so the full run
reuses them) without committing anything; :mod:`.figures` and :mod:`.compare` turn the
sampled rows into what a person decides on (pure); :mod:`.report`, :mod:`.html` render it.
"""
