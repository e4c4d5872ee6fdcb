"""cluster.yaml is a config `ray up` accepts, and it keeps the promises docs/cluster.md makes.

Validation is Ray's own: `prepare_config` merges the provider's defaults.yaml (shipped inside the
Ray package) and `validate_config` checks the result against Ray's ray-schema.json. Validating the
raw YAML always fails: it lacks the fields that the merge fills in (cluster_synced_files, ...).
Neither step talks to AWS; only `ray up`'s later bootstrap step (security groups, IAM, subnets)
does, which is why these tests run offline and without credentials, and the first test proves it
by cutting the network off.

The schema checks key names and value types, not provider fields inside node_config (an
`InstanceTyp` there would pass), so the assertions after it check those values directly.
"""
from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands",
                 "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def all_commands(config: dict) -> list[str]:
    return [command for key in COMMAND_LISTS for command in config.get(key) or []]


def mlflow_server_command(config: dict) -> str:
    found = [c for c in config["head_start_ray_commands"] + config.get("head_setup_commands", [])
             if "mlflow server" in c]
    assert len(found) == 1, f"expected one command that starts `mlflow server` on the head, found {found}"
    return found[0]


def test_validates_against_rays_schema_offline(raw, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("cluster.yaml validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    validate_config(prepare_config(copy.deepcopy(raw)))


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda c: c.__setitem__("setup_comands", c.pop("setup_commands")), id="top-level key"),
    pytest.param(lambda c: c["available_node_types"]["ray.worker.gpu"].__setitem__(
        "max_worker", c["available_node_types"]["ray.worker.gpu"].pop("max_workers")), id="node-type key"),
    pytest.param(lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].__setitem__("GPU", "1"),
                 id="resource as a string"),
])
def test_validator_rejects_a_broken_copy(raw, mutate):
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_mlflow_server_is_bound_to_loopback_only(raw):
    command = mlflow_server_command(raw)
    hosts = re.findall(r"--host[ =](\S+)", command)
    assert hosts == ["127.0.0.1"], f"mlflow server must bind 127.0.0.1 only, got --host {hosts}"
    assert "--port 5000" in command
    assert "--disable-security-middleware" not in command
    assert "sqlite:///$HOME/" in command, "the backend store must be an absolute SQLite path on the head"
    assert re.search(r"--default-artifact-root s3://", command), "artifacts must outlive the head node"
    assert "nohup" in command and command.rstrip().endswith("&)"), "the server must run in the background"
    for command in all_commands(raw):
        assert "0.0.0.0" not in command, f"nothing on the head binds every interface: {command}"


def test_torch_and_torchvision_are_pinned_exactly_before_the_project(raw):
    setup = raw["setup_commands"]
    pins = [i for i, c in enumerate(setup) if re.search(r"\btorch==2\.14\.1(\s|$)", c)
            and re.search(r"\btorchvision==0\.29\.1(\s|$)", c)]
    assert pins, "setup_commands must install torch==2.14.1 and torchvision==0.29.1"
    project = [i for i, c in enumerate(setup) if re.search(r"pip install .*-e ~/kdscale(\s|$)", c)]
    assert project, "setup_commands must install the project (pip install -e ~/kdscale)"
    assert pins[0] < project[0], "the pins must come first, so the project's install finds them satisfied"
    for command in all_commands(raw):
        for spec in re.findall(r"\btorch(?:vision)?\s*[<>=!~]=?\s*[\d.]+", command):
            assert spec in ("torch==2.14.1", "torchvision==0.29.1"), f"loose torch requirement: {spec}"
    assert raw["file_mounts"]["~/kdscale"] == ".", "the code must be synced to where it is installed"


def test_cluster_runs_the_ray_that_validated_it(raw):
    pinned = [m.group(1) for c in raw["setup_commands"] for m in [re.search(r"ray\[[\w,]+\]==([\w.]+)", c)] if m]
    assert pinned == [ray.__version__], (
        f"setup_commands pin Ray {pinned}; the launcher here is Ray {ray.__version__}: keep them equal")


def test_a_gpu_worker_type_scales_from_zero(raw):
    head = raw["head_node_type"]
    gpu_types = {name: t for name, t in raw["available_node_types"].items()
                 if name != head and t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker type declares resources: {GPU: ...}"
    for name, node_type in gpu_types.items():
        assert re.match(r"(g|p)\d", node_type["node_config"]["InstanceType"]), f"{name} is not a GPU instance"
        assert node_type["min_workers"] == 0, f"{name} should cost nothing while no trial needs it"
        assert node_type["max_workers"] >= 1
    assert raw["available_node_types"][head]["resources"].get("GPU", 0) == 0


def test_token_auth_is_on_everywhere_without_a_committed_secret(raw):
    starts = [c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        assert "RAY_AUTH_MODE=token" in command, f"token auth must be set on every node: {command}"
    assert "~/.ray/auth_token" in raw["file_mounts"], "every node needs the same token file"
    text = CLUSTER_YAML.read_text()
    assert "RAY_AUTH_TOKEN=" not in text, "the token must not be written into cluster.yaml"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash(raw):
    # YAML folding (>-) joins lines with spaces; a missing `;` or an unbalanced brace only shows
    # up on a node, minutes into `ray up`. `bash -n` parses without running.
    for command in all_commands(raw):
        result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert result.returncode == 0, f"{command!r}: {result.stderr}"
