"""Vectorised execution of cheap runs: many runs of one shape advanced as one batch.

* :mod:`madlab.plugins.batched` — the opt-in hook for generator plugins (``batched`` attribute).
* :mod:`madlab.engine.batched.metrics` — the low-dimensional metrics on stacked arrays.
* :mod:`madlab.engine.batched.loop` — the loop step for a batch (same seeds, plans and numbers as
  :class:`madlab.engine.loop.Loop`, run by run).
"""
