"""The runner: schedules the runs of a sweep; all the work is in :mod:`madlab.engine.loop`.

One module per concern:

* :mod:`~madlab.runner.sweep`     the driver (``Runner``): what is left, who runs it, the table;
* :mod:`~madlab.runner.folder`    preparing a results folder (jobs, run.json, config.json);
* :mod:`~madlab.runner.jobs`      the worker side: run a unit of jobs in one process, packing;
* :mod:`~madlab.runner.ray_tasks` units as Ray tasks: resources, retries, fault tolerance;
* :mod:`~madlab.runner.progress`  the status line and the workers' progress reports;
* :mod:`~madlab.runner.faults`    fault injection for tests (``MADLAB_FAULT``).
"""
from madlab.runner.faults import FAULT_ENV, Fault, parse_faults
from madlab.runner.folder import plan_jobs, prepare, results_location
from madlab.runner.jobs import Job, run_jobs
from madlab.runner.outcome import Outcome
from madlab.runner.progress import Progress
from madlab.runner.sweep import Runner, Summary

__all__ = ["FAULT_ENV", "Fault", "Job", "Outcome", "Progress", "Runner", "Summary", "parse_faults", "plan_jobs",
           "prepare", "results_location", "run_jobs"]
