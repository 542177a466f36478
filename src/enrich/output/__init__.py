"""An output location: its layout, its records, the commit protocol and how it is read.

* :mod:`~enrich.output.layout`: every key under an output, built and parsed in one place.
* :mod:`~enrich.output.records`: the plan, chunk record and manifest, typed and versioned.
* :mod:`~enrich.output.committed`: what is committed, and whether that is a given job.
* :mod:`~enrich.output.journal`: results journaled while a chunk runs.
* :mod:`~enrich.output.spill`: results kept on local disk while storage refuses them.
* :mod:`~enrich.output.index`, :mod:`~enrich.output.scan`: every reusable result under the
  output, by request hash, whatever chunk wrote it.
* :mod:`~enrich.output.commit`: the chunk commit and the dataset commit.
* :mod:`~enrich.output.reader`: ``read_dataset``, ``read_manifest``, ``output_status``.

This package imports nothing itself, so :mod:`enrich.lease` can take its key from the layout
while the reader reads the lease.
"""
