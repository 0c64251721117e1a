"""The CLI as a user meets it: one message naming the problem, exit status 2, no traceback.
One case runs as a real process; the rest run the same typer app in this process."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import cli, cli_in_process, tiny_raw, write_config


def test_bad_input_in_a_real_process_is_one_message_and_exit_2(tmp_path, teacher_cache):
    cfg = write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache, tmp_path / "run"))
    result = cli("search", "--config", cfg, "--budget", "0")
    assert result.returncode == 2
    assert "--budget (search.budget): Input should be greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.parametrize(
    ("args", "raw_update", "needle"),
    [
        ([], {"teacher": {"model": "resnet19"}}, "unknown timm model 'resnet19'"),
        ([], {"search": {"budgett": 1}}, "search.budgett: unknown key"),
        (["--sampler", "grid"], {}, "unknown sampler 'grid'; registered: nsga2, random, rl, tpe"),
        (["--backend", "slurm"], {}, "unknown backend 'slurm'; registered: optuna, ray"),
        ([], {"teacher": {"checkpoint": "/no/such/file.pt"}}, "file not found"),
        (
            [],
            {"search_space": {"techniques": ["depth", "prune"]}},
            "unknown technique(s) ['prune']",
        ),
        ([], {"plugins": ["no_such_plugin"]}, "plugins: cannot import 'no_such_plugin'"),
    ],
)
def test_bad_input_is_one_message_and_exit_2(tmp_path, teacher_cache, args, raw_update, needle):
    raw = tiny_raw(teacher_cache, tmp_path / "run")
    for section, values in raw_update.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    result = cli_in_process("search", "--config", write_config(tmp_path / "c.yaml", raw), *args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_config_file_and_resume_without_run(tmp_path):
    result = cli_in_process("search", "--config", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "config file not found" in result.stderr
    result = cli_in_process("search", "--resume", "--out", tmp_path / "empty")
    assert result.exit_code == 2 and "no run to resume" in result.stderr


def test_help_lists_the_registered_samplers_and_backends():
    result = cli_in_process("search", "--help")
    assert result.exit_code == 0
    assert "nsga2 | random | rl | tpe" in result.stdout and "optuna | ray" in result.stdout


def test_help_shows_flags_as_flags_and_where_each_default_comes_from():
    text = " ".join(cli_in_process("search", "--help").stdout.split())
    assert "--resume continue the run" in text and "<bool>" not in text
    assert "--config <path> YAML experiment config [default: configs/digits.yaml]" in text
    assert (
        "--budget <int> trials to train [default: the config's search.budget; "
        "100 in digits.yaml]" in text
    )
    teacher = " ".join(cli_in_process("teacher", "--help").stdout.split())
    assert (
        "--seed <int> of the teacher's training [default: the config's teacher.seed; 0" in teacher
    )


def test_teacher_command_shows_the_cached_card(tiny, teacher_cache, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache))
    result = cli_in_process("teacher", "--config", cfg)
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert card["model"] == "resnet18" and card["fingerprint"] == tiny.teacher.card.fingerprint


def test_resume_takes_the_original_flags_and_names_each_real_conflict(searched_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(searched_run, run)
    stored = json.loads((run / "run.json").read_text())["config"]
    same = cli_in_process("search", "--resume", "--out", run, "--epochs", 2, "--seed", 0)
    assert same.exit_code == 0, same.output  # "the same command plus --resume" works
    changed = cli_in_process("search", "--resume", "--out", run, "--epochs", 5, "--budget", 9)
    assert changed.exit_code == 2
    assert "training.epochs is 2 in the run, 5 here" in " ".join(changed.stderr.split())
    config = dict(stored, out=None, training={**stored["training"], "lr": 0.5})
    cfg = write_config(tmp_path / "c.yaml", config)
    changed = cli_in_process("search", "--resume", "--config", cfg, "--out", run)
    assert changed.exit_code == 2
    assert "training.lr is 0.002 in the run, 0.5 here" in " ".join(changed.stderr.split())
    assert len(json.loads((run / "run.json").read_text())["sessions"]) == 2  # one resume ran
