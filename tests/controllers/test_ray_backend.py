"""The Ray Tune controller on real Ray: the controller contract on a two-node cluster on loopback
in a private network namespace (tests/ray_cluster.py), and what only Ray does: a local
instance that listens on loopback only, job submission, the cluster file, node failure."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray

from automl.config import validate_config
from automl.controllers.ray_connect import connect
from automl.run.search import run_search
from tests.conftest import ROOT, tiny_raw, write_config
from tests.controllers.contract import *  # noqa: F403  (the contract's tests run here)
from tests.controllers.contract import complete_in_study, rows, wait
from tests.ray_cluster import LoopbackCluster


def test_local_instance_listens_on_loopback_only_and_searches(tiny, teacher_cache, tmp_path):
    """No --address: the tool starts Ray itself, on 127.0.0.1 only, with no dashboard, and
    runs the same search, into the same run directory, as the local controller."""
    config = validate_config(
        tiny_raw(teacher_cache, tmp_path / "run", budget=1, backend="ray"), "t"
    )
    assert connect(config.ray)
    try:
        me = psutil.Process()
        ours = {p.pid for p in me.children(recursive=True)} | {me.pid}
        listening = [
            c
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in ours
        ]
        assert listening, "Ray's servers were not found"
        assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
        names = {psutil.Process(c.pid).name() for c in listening}
        assert not any("dashboard" in n for n in names)
        summary = run_search(config)  # joins the instance started above
    finally:
        ray.shutdown()
    assert summary.completed == 1
    assert {"study.db", "run.json", "trials.csv", "pareto.json", "report.html", "models"} <= {
        p.name for p in (tmp_path / "run").iterdir()
    }


@pytest.fixture(scope="module")
def cluster():
    # The dashboard serves Ray jobs; in the namespace it can only listen on loopback.
    c = LoopbackCluster(head_cpus=1, dashboard=True).start(workers=1)
    try:
        yield c
    finally:
        c.stop()


def search(cluster: LoopbackCluster, config: Path | None, *args: str) -> subprocess.Popen:
    """`cli.py search` with the Ray backend, as a driver inside the cluster's namespace."""
    flags = ["--config", str(config)] if config is not None else []
    return cluster.popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "search",
            *flags,
            "--address",
            cluster.address,
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def start_search(cluster):
    def start(config: Path | None, *args: str) -> subprocess.Popen:
        backend = ["--backend", "ray"] if config is not None else []  # resume keeps its own
        return search(cluster, config, *backend, *args)

    return start


@pytest.fixture(scope="module")
def nodes(cluster) -> dict[str, str]:
    """The node ids of the cluster's head and its worker, read once, before any test adds or
    kills a node of its own."""
    return ray_node_ids(cluster)


@pytest.fixture
def check_backend(cluster, searched_run, nodes):
    def check(run: Path) -> None:
        finished = [r for r in rows(run) if r["state"] in ("COMPLETE", "PRUNED")]
        assert {r["node_id"] for r in finished} <= {nodes["head"], nodes["worker"]}
        # The teacher went to the workers once, as an object; no trial ran it (logits cached).
        study_trials = _study_trials(run)
        done = [t for t in study_trials if t.state.name == "COMPLETE"]
        assert done and all(t.user_attrs["teacher_forward_calls"] == 0 for t in done)
        assert (run / "ray").is_dir()  # Tune's own folders stay inside the run directory
        # The files have the local controller's formats, so every later command reads both.
        local = json.loads((searched_run / "pareto.json").read_text())
        remote = json.loads((run / "pareto.json").read_text())
        assert set(remote) == set(local) and set(remote["front"][0]) == set(local["front"][0])
        local_cols = next(csv.reader((searched_run / "trials.csv").open()))
        remote_cols = next(csv.reader((run / "trials.csv").open()))
        assert (
            set(local_cols) - {c for c in local_cols if c.startswith("stage")} <= set(remote_cols)
            and "node_id" in remote_cols
        )

    return check


def _study_trials(run: Path):
    import optuna

    name = json.loads((run / "run.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run}/study.db").trials


@pytest.fixture
def cluster_config(tiny, teacher_cache, tmp_path) -> Path:
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=4)
    return write_config(tmp_path / "config.yaml", raw)


def test_search_submitted_as_a_ray_job(cluster, cluster_config):
    """The README's `ray job submit` command, against the head's dashboard."""
    command = (
        f"cd {ROOT} && python cli.py search --config {cluster_config} --backend ray "
        "--address auto --budget 1"
    )
    proc = cluster.run(
        ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--", "bash", "-c", command],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr
    assert len(complete_in_study(cluster_config.parent / "run" / "study.db", "tiny")) == 1


def test_cluster_yaml_is_valid_for_ray_up():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "configs" / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's own schema; raises when invalid
    assert config["provider"]["type"] == "local"
    assert any("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"])


def test_a_worker_node_dies_mid_search(cluster, nodes, tiny, teacher_cache, tmp_path):
    """A node of its own joins the cluster and is killed once it has finished a trial (so
    trials ran there). The trials it held are retried on the other nodes, and the budget is
    reached there. The module's own worker stays, so no test depends on running before this
    one."""
    victim = cluster.add_worker()
    doomed = (set(alive_node_ids(cluster)) - set(nodes.values())).pop()
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=6)
    raw["training"]["epochs"] = 2  # long enough for every node's actor to start and take trials
    run = tmp_path / "run"
    proc = search(cluster, write_config(tmp_path / "c.yaml", raw), "--backend", "ray")
    deadline = time.monotonic() + 240

    def on_victim() -> list[dict[str, str]]:
        done = rows(run) if (run / "trials.csv").exists() else []
        return [r for r in done if r["state"] == "COMPLETE" and r["node_id"] == doomed]

    while not on_victim():
        assert proc.poll() is None, "the search ended before the node ran a trial"
        assert time.monotonic() < deadline, "the node ran no trial"
        time.sleep(0.2)
    before = {int(r["number"]): r for r in rows(run) if r["state"] == "COMPLETE"}
    cluster.kill_worker(victim)
    wait(proc)
    after = {int(r["number"]): r for r in rows(run) if r["state"] == "COMPLETE"}
    assert len(after) == 6
    for number, row in before.items():  # none lost or changed
        assert after[number] == row
    late = [r for n, r in after.items() if n not in before]
    assert late and {r["node_id"] for r in late} <= set(nodes.values())


def alive_node_ids(cluster: LoopbackCluster) -> list[str]:
    proc = cluster.run(
        [
            sys.executable,
            "-c",
            f"import ray; ray.init(address='{cluster.address}', logging_level='ERROR');"
            "print(*[n['NodeID'] for n in ray.nodes() if n['Alive']])",
        ],
        check=True,
    )
    return proc.stdout.strip().splitlines()[-1].split()


def ray_node_ids(cluster: LoopbackCluster) -> dict[str, str]:
    """The node ids of the cluster's head and (first) worker."""
    proc = cluster.run(
        [
            sys.executable,
            "-c",
            f"import ray; ray.init(address='{cluster.address}', logging_level='ERROR');"
            "alive = [n for n in ray.nodes() if n['Alive']];"
            "head = [n['NodeID'] for n in alive if 'node:__internal_head__' in n['Resources']];"
            "print(head[0], [n['NodeID'] for n in alive if n['NodeID'] != head[0]][0])",
        ],
        check=True,
    )
    head, worker = proc.stdout.strip().splitlines()[-1].split()
    return {"head": head, "worker": worker}
