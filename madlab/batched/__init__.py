"""Vectorised execution of cheap runs: many runs of one shape advanced as one batch.

* :mod:`madlab.batched.family` — the opt-in hook for generator plugins (``batched`` attribute).
* :mod:`madlab.batched.metrics` — the low-dimensional metrics on stacked arrays.
* :mod:`madlab.batched.loop` — the loop step for a batch (same seeds, plans and numbers as
  :class:`madlab.loop.Loop`, run by run).
"""
