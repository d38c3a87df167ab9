"""Multi-node Ray scenarios, each run in its own process by tests/test_cluster.py.

``python tests/cluster_scenarios.py SCENARIO SPEC.json OUT_DIR`` builds a cluster with Ray's own
multi-node harness (``ray.cluster_utils.Cluster``: a head and worker nodes as separate raylets on
this machine, ``add_node``/``remove_node``), runs a sweep through madlab's Runner against it,
changes the cluster mid-sweep, and writes ``OUT_DIR/scenario.json`` (what happened: summary,
actor placement, node ids) for the test to check.

A separate process because the test session shares one in-process Ray instance
(tests/conftest.py::ray_session) and a driver can be connected to one cluster only.
Node resources are logical: ``num_gpus`` on a node without GPUs is what Ray schedules with.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

#: dead nodes are noticed within ~1.5 s instead of Ray's default ~30 s
FAST_FAILURE_DETECTION = {"health_check_period_ms": 300, "health_check_failure_threshold": 5,
                          "health_check_initial_delay_ms": 0}
NODE = dict(object_store_memory=80 * 1024 * 1024, include_dashboard=False)


CLUSTERS: list[Cluster] = []


def start_cluster(head_cpus: float, **head) -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=head_cpus, _system_config=FAST_FAILURE_DETECTION, **NODE, **head))
    CLUSTERS.append(cluster)
    return cluster


def done_count(out: Path) -> int:
    return len(list(out.glob("runs/*/gen-*/DONE")))


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def run_sweep(spec: dict, out: Path, address: str):
    from madlab.specs import build_spec
    from madlab.runner import Runner

    with open(out.parent / f"{out.name}.log", "w") as log:
        return Runner(build_spec(spec), str(out), address=address, stream=log, progress_every=1.0).run()


def nodes_of(summary) -> dict[str, str]:
    """The node that ran each run's last call (the Ray task records it in the outcome)."""
    return {o.run_id: o.node for o in summary.outcomes}


class Sweep(threading.Thread):
    """The sweep in a background thread: the main thread changes the cluster (starting a node
    installs signal handlers, which only the main thread may)."""

    def __init__(self, spec: dict, out: Path, address: str):
        super().__init__(daemon=True)
        self.args, self.summary, self.error = (spec, out, address), None, None

    def run(self):
        try:
            self.summary = run_sweep(*self.args)
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self, timeout: float = 600):
        self.join(timeout)
        if self.error is not None:
            raise self.error
        if self.summary is None:
            raise TimeoutError("the sweep did not finish")
        return self.summary


def summary_json(summary) -> dict:
    return {"failed": {o.run_id: o.error for o in summary.failed}, "runs": summary.runs,
            "seconds": summary.seconds}


# ----------------------------------------------------------------------------------- scenarios

def node_loss(spec: dict, out: Path) -> dict:
    """Two 2-CPU worker nodes run a 4-run sweep; once generations are being published a fresh node
    joins and one of the two is killed outright: its runs are retried on the new node (the other is
    busy) and the sweep completes."""
    cluster = start_cluster(0)  # the head hosts the driver and the progress tracker only
    doomed = cluster.add_node(num_cpus=2, **NODE)
    cluster.add_node(num_cpus=2, **NODE)
    ray.init(address=cluster.address, logging_level=logging.ERROR)
    events: dict = {"doomed": doomed.node_id}
    total = len(spec["sweep"]["seed"]) * spec["loop"]["generations"]

    sweep = Sweep(spec, out, cluster.address)
    sweep.start()
    wait_for(lambda: done_count(out) >= 2, 180, "no generation published")
    events["added"] = cluster.add_node(num_cpus=2, **NODE).node_id  # joins while all four runs are busy
    events["done_at_loss"] = done_count(out)
    cluster.remove_node(doomed, allow_graceful=False)  # SIGKILL: raylet and its workers, as a lost VM
    summary = sweep.result()
    events.update(summary=summary_json(summary), nodes=nodes_of(summary), total=total)
    return events


def unplaceable(spec: dict, out: Path) -> dict:
    """Every GPU node is lost mid-sweep (the 1-GPU run then fits no node), and a run asks for 2 GPUs
    on nodes of 1: both wait $MADLAB_PLACEMENT_TIMEOUT_S, then fail with one line; the CPU run finishes."""
    cluster = start_cluster(2)
    gpu_nodes = [cluster.add_node(num_cpus=1, num_gpus=1, **NODE) for _ in range(2)]
    ray.init(address=cluster.address, logging_level=logging.ERROR)
    events: dict = {}

    start = time.monotonic()
    sweep = Sweep(spec, out, cluster.address)
    sweep.start()
    wait_for(lambda: any(out.glob("runs/num_gpus=1*/gen-0002/DONE")), 180, "the GPU run never started")
    for node in gpu_nodes:  # every GPU node is lost
        cluster.remove_node(node, allow_graceful=False)
    events["lost_at"] = time.monotonic()
    summary = sweep.result()
    events.update(summary=summary_json(summary), seconds_after_loss=time.monotonic() - events.get("lost_at", start),
                  log=(out.parent / f"{out.name}.log").read_text())
    return events


@ray.remote
def hold_gpu_share(seconds: float) -> dict:
    """What a GPU task sees (madlab's run_unit runs under the same Ray assignment), held for a while."""
    from madlab.runner.placement import worker_placement

    start = time.time()
    time.sleep(seconds)
    return {**worker_placement("cpu", None), "window": (start, time.time())}


def fractional(spec: dict, out: Path) -> dict:
    """One node with one logical GPU: five tasks at num_gpus 0.25; four hold it at once and the
    fifth waits for one to finish; each sees the CUDA_VISIBLE_DEVICES Ray gives it. A second node
    with two logical GPUs gives whole-GPU tasks distinct devices."""
    cluster = start_cluster(1, num_gpus=1)
    cluster.add_node(num_cpus=1, num_gpus=2, resources={"two_gpus": 2}, **NODE)
    ray.init(address=cluster.address, logging_level=logging.ERROR)
    head_only = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
    quarter = ray.get([hold_gpu_share.options(num_cpus=0.2, num_gpus=0.25, scheduling_strategy=head_only).remote(12)
                       for _ in range(5)], timeout=240)
    whole = ray.get([hold_gpu_share.options(num_cpus=0.5, num_gpus=1, resources={"two_gpus": 1}).remote(6)
                     for _ in range(2)], timeout=240)
    return {"quarter": quarter, "whole": whole}


def fractional_sweep(spec: dict, out: Path) -> dict:
    """A sweep at num_gpus 0.25 through the Runner on one node with one logical GPU."""
    cluster = start_cluster(2, num_gpus=1)
    ray.init(address=cluster.address, logging_level=logging.ERROR)
    summary = run_sweep(spec, out, cluster.address)
    return {"head": cluster.head_node.node_id, "summary": summary_json(summary), "nodes": nodes_of(summary),
            "windows": {o.run_id: o.window for o in summary.outcomes}}


SCENARIOS = {"node_loss": node_loss, "unplaceable": unplaceable, "fractional": fractional,
             "fractional_sweep": fractional_sweep}

if __name__ == "__main__":
    name, spec_path, out_dir = sys.argv[1:4]
    out = Path(out_dir)
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = SCENARIOS[name](spec, out)
        (out.parent / f"{out.name}.scenario.json").write_text(json.dumps(result, indent=1, default=str))
    finally:
        ray.shutdown()
        for cluster in CLUSTERS:
            cluster.shutdown()
