"""Fault injection for tests: make a worker die, a generation raise, or a run slow, on purpose.

``MADLAB_FAULT`` holds faults separated by ``;``, each ``MODE:RUN:VALUE`` with RUN a run id or
a glob (``*``):

* ``kill:RUN:T``  the worker process exits hard before generation T (once per run);
* ``crash:RUN:T`` the same, every time (a run that always kills its worker);
* ``raise:RUN:T`` generation T raises (every time);
* ``sleep:RUN:S`` sleep S seconds before every generation (makes cheap runs slow enough to
  interrupt).
"""
from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass

from madlab.core.errors import MadlabError, RunFailed

FAULT_ENV = "MADLAB_FAULT"
MODES = ("kill", "crash", "raise", "sleep")


@dataclass(frozen=True)
class Fault:
    mode: str
    run: str
    value: float


def parse_faults(spec: str | None) -> list[Fault]:
    if not spec:
        return []
    faults = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            mode, run, value = part.rsplit(":", 2)
            if mode not in MODES:
                raise ValueError
            faults.append(Fault(mode, run, float(value)))
        except ValueError:
            raise MadlabError(f"{FAULT_ENV}={spec!r}: expected MODE:RUN:VALUE with MODE kill, crash, raise or sleep, "
                              f"e.g. kill:*:3") from None
    return faults


def fault_hook(spec: str | None):
    """The ``Loop`` hook called before each generation, or None when no fault is asked for."""
    faults = parse_faults(spec)
    if not faults:
        return None

    def hook(loop, t):
        store = loop.store
        for fault in faults:
            if not fnmatch.fnmatchcase(store.name, fault.run):
                continue
            if fault.mode == "sleep":
                time.sleep(fault.value)
            elif t == int(fault.value) and fault.mode == "raise":
                raise RunFailed(f"injected failure at generation {t}")
            elif t == int(fault.value) and (fault.mode == "crash" or (
                    fault.mode == "kill" and store.touch_marker(f"fault-kill-{t}"))):
                os._exit(17)  # as abrupt as a node dying: no cleanup, no exception
    return hook
