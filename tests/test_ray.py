"""The Ray Tune backend on real Ray: a local instance, and a two-node cluster on loopback in a
private network namespace (tests/ray_cluster.py). Small budgets, real trials."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
import ray

from automl.config import validate_config
from automl.controllers.ray_backend import connect
from automl.search import run_search
from tests.conftest import tiny_raw, write_config
from tests.ray_cluster import LoopbackCluster

ROOT = Path(__file__).resolve().parent.parent


def rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "trials.csv").open()))


def completed(run: Path) -> dict[int, dict[str, str]]:
    if not (run / "trials.csv").exists():
        return {}
    return {int(r["number"]): r for r in rows(run) if r["state"] == "COMPLETE"}


def study_trials(run: Path) -> list[optuna.trial.FrozenTrial]:
    name = json.loads((run / "run.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run}/study.db").trials


def test_local_instance_listens_on_loopback_only_and_searches(tiny, teacher_cache, tmp_path):
    """No --address: the tool starts Ray itself, on 127.0.0.1 only, with no dashboard, and
    runs the same search, into the same run directory, as the local backend."""
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=2, backend="ray")
    config = validate_config(raw, "test")
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
    run = tmp_path / "run"
    assert summary.completed == 2
    assert {"study.db", "run.json", "trials.csv", "pareto.json", "report.html", "models"} <= {
        p.name for p in run.iterdir()
    }
    assert all(r["node_id"] for r in rows(run))
    assert (run / "ray").is_dir()  # Tune's own folders stay inside the run directory
    # The teacher went to the workers once, as an object; no trial ran it (logits cached).
    assert all(t.user_attrs["teacher_forward_calls"] == 0 for t in study_trials(run))


@pytest.fixture(scope="module")
def cluster():
    # The dashboard serves Ray jobs; in the namespace it can only listen on loopback.
    c = LoopbackCluster(head_cpus=1, dashboard=True).start(workers=1)
    try:
        yield c
    finally:
        c.stop()


def cli_in(cluster: LoopbackCluster, *args: str) -> subprocess.Popen:
    """`cli.py ARGS` as a driver inside the cluster's network namespace."""
    return cluster.popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def search(cluster: LoopbackCluster, config: Path, *args: str) -> subprocess.Popen:
    return cli_in(
        cluster,
        "search",
        "--config",
        str(config),
        "--backend",
        "ray",
        "--address",
        cluster.address,
        *args,
    )


def wait_for(predicate, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


@pytest.fixture
def cluster_config(tiny, teacher_cache, tmp_path) -> Path:
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=6)
    raw["training"]["epochs"] = 2
    return write_config(tmp_path / "config.yaml", raw)


def test_search_through_address_runs_on_both_nodes(cluster, cluster_config, searched_run):
    proc = search(cluster, cluster_config)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    run = cluster_config.parent / "run"
    done = completed(run)
    assert len(done) == 6
    assert len({r["node_id"] for r in done.values()}) == 2  # head and worker both ran trials
    # Same formats as the local backend's run, so every later command works on both.
    local = json.loads((searched_run / "pareto.json").read_text())
    remote = json.loads((run / "pareto.json").read_text())
    assert set(remote) == set(local)
    assert set(remote["front"][0]) == set(local["front"][0])
    local_cols = next(csv.reader((searched_run / "trials.csv").open()))
    assert set(next(csv.reader((run / "trials.csv").open()))) == {*local_cols, "node_id"}
    assert sorted(p.name for p in (run / "models").glob("*.safetensors")) == sorted(
        Path(m["weights"]).name for m in remote["front"]
    )
    assert not (cluster.home / "ray_results").exists()


def test_early_stopping_with_asha(cluster, tiny, teacher_cache, tmp_path):
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=3)
    raw["training"]["epochs"] = 2
    config = write_config(tmp_path / "config.yaml", raw)
    proc = search(cluster, config, "--early-stop", "asha", "--max-concurrent", "1")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    run = tmp_path / "run"
    states = [r["state"] for r in rows(run)]
    assert states.count("COMPLETE") == 3
    stopped = [r for r in rows(run) if r["state"] == "PRUNED"]
    assert stopped, "ASHA stopped no trial"
    assert all("stopped early by ASHA" in r["error"] for r in stopped)
    front = {m["trial"] for m in json.loads((run / "pareto.json").read_text())["front"]}
    assert not front & {int(r["number"]) for r in stopped}


def test_search_submitted_as_a_ray_job(cluster, cluster_config):
    """The README's `ray job submit` command, against the head's dashboard."""
    search = (
        f"cd {ROOT} && python cli.py search --config {cluster_config} --backend ray "
        "--address auto --budget 2"
    )
    proc = cluster.run(
        ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--", "bash", "-c", search],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr
    assert len(completed(cluster_config.parent / "run")) == 2


def test_cluster_yaml_is_valid_for_ray_up():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "configs" / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's own schema; raises when invalid
    assert config["provider"]["type"] == "local"
    assert any("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"])


def test_resume_after_the_driver_is_killed(cluster, cluster_config):
    run = cluster_config.parent / "run"
    proc = search(cluster, cluster_config)
    wait_for(lambda: len(completed(run)) >= 2)
    before = completed(run)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = cli_in(cluster, "search", "--resume", "--out", str(run), "--address", cluster.address)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    after = completed(run)
    assert len(after) == 6
    for number, row in before.items():  # no completed trial lost or changed
        assert after[number] == row
    assert len(list((run / "ray").glob("session-*"))) == 2


def test_a_worker_node_dies_mid_search(cluster, cluster_config):
    """Last in this module: it kills the cluster's worker node."""
    run = cluster_config.parent / "run"
    proc = search(cluster, cluster_config)
    wait_for(lambda: len(completed(run)) >= 1)
    before = completed(run)
    cluster.kill_worker(cluster.workers[0])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    after = completed(run)
    assert len(after) == 6  # the budget is reached on the remaining node
    for number, row in before.items():
        assert after[number] == row
    assert "died" in out or "terminated" in out or "ActorDied" in out or "failed" in out
