"""The row-level engine: a pure core and the async shell around it.

=================  ===========================================================================
module             what it holds
=================  ===========================================================================
``selection``      pure: which of a chunk's requests to reuse, wait for, or send
``fold``           pure: results back onto rows (shared copies), and the chunk's counters
``sender``         one request: rate-controller admission, the completer call, retries
``runner``         :class:`Engine`: runs a chunk with the above and the output's result
                   index, journals, commits
``progress``       :class:`RunProgress`: the run's live counters, handed to an observer
=================  ===========================================================================

The engine reaches the API only through a :class:`~enrich.completer.Completer`.
"""

from enrich.engine.progress import ProgressObserver, RunProgress
from enrich.engine.runner import Engine

__all__ = ["Engine", "ProgressObserver", "RunProgress"]
