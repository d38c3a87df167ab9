"""ray_cluster.yaml passes the checks `ray up` runs before it contacts the cloud.

``ray up`` (ray.autoscaler._private.commands.create_or_update_cluster) loads the YAML, looks up
the provider type, then ``_bootstrap_config``: ``prepare_config`` (merge with the provider's
defaults.yaml, docker checks, per-type worker bounds), the provider's resource autodetection
(an AWS API call, skipped here: our node types state their resources), and ``validate_config``
(ray-schema.json plus the head-type and min/max-worker rules). Everything after that talks to AWS.
"""
import copy
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.providers import _NODE_PROVIDERS
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG = Path(__file__).resolve().parent.parent / "ray_cluster.yaml"


def ray_up_offline_checks(config: dict) -> dict:
    if config["provider"]["type"] not in _NODE_PROVIDERS:
        raise ValueError(f"unknown provider type {config['provider']['type']!r}")
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_cluster_config_passes_ray_up_validation(config):
    prepared = ray_up_offline_checks(config)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == "head"


def test_image_is_pinned_to_the_installed_ray(config):
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"


def test_cpu_head_and_autoscaling_spot_gpu_workers(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [t for name, t in types.items() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types and all(t["min_workers"] == 0 < t["max_workers"] for t in gpu_types)
    assert all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in gpu_types)


def test_setup_installs_madlab(config):
    assert any("pip install" in cmd and "madlab" in cmd for cmd in config["setup_commands"])
    assert "." in config["file_mounts"].values()  # the checkout `ray up` runs from


def _start_commands(config) -> dict[str, list[str]]:
    return {"head": config["head_start_ray_commands"], "worker": config["worker_start_ray_commands"]}


def exposure_problems(config: dict) -> list[str]:
    """What would let someone other than the cluster's owner reach it (empty: nothing).

    The dashboard serves Ray's Jobs API (arbitrary code): it must bind to localhost only (Ray's
    default when --dashboard-host is absent), and every node must start with token auth on.
    """
    problems = []
    for role, commands in _start_commands(config).items():
        starts = [shlex.split(c.split(";")[-1]) for c in commands if "ray start" in c]
        if not starts:
            problems.append(f"{role}: no `ray start` command")
        for argv in starts:
            env = dict(a.split("=", 1) for a in argv[:argv.index("ray")] if "=" in a)
            if env.get("RAY_AUTH_MODE") != "token":
                problems.append(f"{role}: ray start without RAY_AUTH_MODE=token")
            hosts = [a.split("=", 1)[1] for a in argv if a.startswith("--dashboard-host=")]
            hosts += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--dashboard-host"]
            if any(h not in ("127.0.0.1", "localhost", "::1") for h in hosts):
                problems.append(f"{role}: dashboard bound to {hosts}")
    if not any(str(dst).endswith(".ray/auth_token") for dst in config.get("file_mounts", {})):
        problems.append("file_mounts: the auth token is not copied to the nodes")
    return problems


def test_dashboard_is_local_and_token_auth_is_on(config):
    assert exposure_problems(config) == []
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "ray dashboard ray_cluster.yaml" in CONFIG.read_text()  # how to reach it is documented
    assert any("RAY_AUTH_MODE=token" in c for c in config["setup_commands"])  # the driver's shell too


EXPOSED = [
    ("dashboard on all interfaces", lambda c: c.update(head_start_ray_commands=[
        cmd.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0") for cmd in c["head_start_ray_commands"]])),
    ("dashboard host as a separate argument", lambda c: c.update(head_start_ray_commands=[
        cmd.replace("--dashboard-host=127.0.0.1", "--dashboard-host 0.0.0.0") for cmd in c["head_start_ray_commands"]])),
    ("worker without token auth", lambda c: c.update(worker_start_ray_commands=[
        cmd.replace("RAY_AUTH_MODE=token ", "") for cmd in c["worker_start_ray_commands"]])),
    ("token not shipped", lambda c: c["file_mounts"].pop("/home/ray/.ray/auth_token")),
]


@pytest.mark.parametrize("label,exposes", EXPOSED, ids=[e[0] for e in EXPOSED])
def test_exposed_variants_are_caught(config, label, exposes):
    broken = copy.deepcopy(config)
    exposes(broken)
    assert exposure_problems(broken)
    ray_up_offline_checks(broken)  # each is still a valid `ray up` config: only this test catches it


def _set(config, path, value):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


BROKEN = [
    ("typo in a top-level key", lambda c: c.update(max_worker=4), jsonschema.ValidationError),
    ("head type not defined", lambda c: c.update(head_node_type="cpu_head"), ValueError),
    ("fractional GPU resource on a node", lambda c: _set(c, ["available_node_types", "gpu_spot", "resources", "GPU"], 0.5),
     jsonschema.ValidationError),
    ("more min workers than max_workers",
     lambda c: _set(c, ["available_node_types", "gpu_spot", "min_workers"], 20), ValueError),
    ("node type without resources (AWS autodetection is online)", lambda c: c["available_node_types"]["gpu_spot"].pop("resources"),
     jsonschema.ValidationError),
    ("unknown provider", lambda c: _set(c, ["provider", "type"], "aws2"), ValueError),
]


@pytest.mark.parametrize("label,breaks,error", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_variants_are_rejected(config, label, breaks, error):
    broken = copy.deepcopy(config)
    breaks(broken)
    with pytest.raises(error):
        ray_up_offline_checks(broken)
