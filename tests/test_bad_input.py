"""The bad-input corpus: each case is one `cli.py search` in this process on a config or flag
that is wrong, and each must end in one message naming the problem (exit status 2, no
traceback) before anything is written. Add a case with every new config field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_in_process, tiny_raw, write_config

KD_INT = {"type": "int"}


def assert_refused(result: Any, needle: str) -> None:
    """Exit status 2, no exception escaped, and `needle` in the message (lines re-joined)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert needle in " ".join(result.output.split()), result.output


CASES: list[tuple[str, dict[str, Any], list[str], str]] = [
    # (case, dotted config changes, extra flags, what the message must say)
    (
        "inf bound",
        {
            "search_space.channel_keep": {
                "type": "float",
                "low": 0.25,
                "high": float("inf"),
                "step": 0.125,
            }
        },
        [],
        "search_space.channel_keep: low and high must be finite numbers",
    ),
    (
        "key in a stage's entry",
        {"search_space.bits": [8, {"type": "choice", "valuez": [4]}, 8, 8]},
        [],
        "search_space.bits.1.valuez: unknown key",
    ),
    (
        "key in a dimension",
        {"search_space.channel_keep": {"type": "float", "low": 0.5, "high": 1.0, "stepp": 0.1}},
        [],
        "search_space.channel_keep.stepp: unknown key; allowed: high, log, low, step, type",
    ),
    (
        "int without bounds",
        {"search_space.kd_temperature": KD_INT},
        [],
        "search_space.kd_temperature: an int dimension needs low and high",
    ),
    (
        "seed too big",
        {},
        ["--seed", "99999999999"],
        "--seed (seed): Input should be less than 2147483648",
    ),
    (
        "seed 2**32 - 1",
        {},
        ["--seed", "4294967295"],
        "--seed (seed): Input should be less than 2147483648",
    ),
    (
        "endless warm-up",
        {"latency.warmup": 10**12},
        [],
        "latency.warmup: Input should be less than or equal to 10000",
    ),
    ("untrained teacher", {"teacher.epochs": 0}, [], "teacher.epochs: 0 trains nothing"),
    (
        "batch of one",
        {"training.batch_size": 1},
        [],
        "training.batch_size: Input should be greater than or equal to 2",
    ),
    (
        "teacher batch of one",
        {"teacher.batch_size": 1},
        [],
        "teacher.batch_size: Input should be greater than or equal to 2",
    ),
    (
        "enqueue entry not a mapping",
        {"search.enqueue": [3]},
        [],
        "search.enqueue.0: Input should be a valid dictionary",
    ),
    (
        "enqueue unknown dimension",
        {"search.enqueue": [{"width": 2}]},
        [],
        "search.enqueue.0: width is no dimension of the search space; allowed: blocks",
    ),
    (
        "enqueue outside a stage",
        {"search.enqueue": [{"blocks": [1, 1, 1, 5]}]},
        [],
        "search.enqueue.0: blocks (stage 3, layer4): 5 is not allowed; the dimension is 1..2",
    ),
    (
        "enqueue value not in a choice",
        {"search.enqueue": [{"criterion": "hessian"}]},
        [],
        "search.enqueue.0: criterion: 'hessian' is not allowed; the dimension is",
    ),
    (
        "a transformer teacher",
        {"teacher.model": "vit_tiny_patch16_224"},
        [],
        "teacher.model: 'vit_tiny_patch16_224' cannot take the data's 1x16x16 images",
    ),
    ("out is a file", {}, ["--out", "{tmp}/a_file"], "a_file is a file; choose another --out"),
    (
        "teacher cache under a file",
        {"teacher.cache_dir": "{tmp}/a_file/teachers"},
        [],
        "a_file is a file, so the trained teacher could not be saved",
    ),
    (
        "out under a file",
        {},
        ["--out", "{tmp}/a_file/run"],
        "a_file is a file; choose another --out",
    ),
]


@pytest.mark.parametrize(("case", "changes", "flags", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_search_input_is_one_message_and_exit_2(
    tiny, teacher_cache, tmp_path, case, changes, flags, needle
):
    raw = tiny_raw(teacher_cache, tmp_path / "run")
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value.format(tmp=tmp_path) if isinstance(value, str) else value
    (tmp_path / "a_file").write_text("mine")
    flags = [f.format(tmp=tmp_path) for f in flags]
    result = cli_in_process("search", "--config", write_config(tmp_path / "c.yaml", raw), *flags)
    assert_refused(result, needle)
    assert not (tmp_path / "run").exists() and (tmp_path / "a_file").read_text() == "mine"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (bytes(range(256)), "not a text file (a YAML config is UTF-8 text)"),
        (b"", "is empty; leave out --config to run the defaults (digits.yaml)"),
        (b"# only a comment\n", "is empty; leave out --config"),
        (b"search: [1, 2\n", "not valid YAML"),
        (b"- a list\n", "the top level must be a mapping of sections"),
    ],
)
def test_a_config_file_that_is_no_config_is_named(tmp_path, content, needle):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert_refused(cli_in_process("search", "--config", path), needle)
    assert_refused(cli_in_process("search", "--config", tmp_path), "is a directory; name a YAML")
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["c.yaml"]


OTHER_COMMANDS: list[tuple[str, list[str], str]] = [
    # (case, arguments with {tmp} for the test's folder, what the message must say)
    (
        "pick: NaN latency limit",
        ["pick", "{tmp}/run", "--max-latency-ms", "nan"],
        "--max-latency-ms must be a positive number, got nan",
    ),
    (
        "pick: infinite size limit",
        ["pick", "{tmp}/run", "--max-size-kb", "inf"],
        "--max-size-kb must be a positive number, got inf",
    ),
    (
        "train: 0 epochs",
        ["train", "{tmp}/arch.json", "--epochs", "0"],
        "Invalid value for '--epochs'",
    ),
    (
        "train: -3 epochs",
        ["train", "{tmp}/arch.json", "--epochs", "-3"],
        "Invalid value for '--epochs'",
    ),
    (
        "train: seed past 2**31",
        ["train", "{tmp}/arch.json", "--seed", "4294967295"],
        "Invalid value for '--seed'",
    ),
    (
        "train: --out under a file",
        ["train", "{tmp}/arch.json", "--out", "{tmp}/a_file/model"],
        "a_file is a file, not a folder",
    ),
    ("train: not an architecture", ["train", "{tmp}/a_file"], "a_file is not valid JSON"),
    (
        "train: an unknown criterion",
        ["train", "{tmp}/arch_foo.json"],
        "unknown pruning criterion 'foo'; known: ['bn_scale', 'l1', 'l2', 'random', 'taylor']",
    ),
    (
        "resume: a truncated run.json",
        ["search", "--resume", "--out", "{tmp}/truncated"],
        "truncated/run.json is not valid JSON",
    ),
    (
        "resume: a run.json without its sections",
        ["search", "--resume", "--out", "{tmp}/sectionless"],
        "sectionless/run.json is not a RunDocument of this tool (config: Field required",
    ),
    ("report: no run", ["report", "{tmp}/none"], "no run directory at"),
    ("finalize: a file as run", ["finalize", "{tmp}/a_file"], "a_file"),
]


@pytest.mark.parametrize(
    ("case", "args", "needle"), OTHER_COMMANDS, ids=[c[0] for c in OTHER_COMMANDS]
)
def test_bad_input_to_other_commands_is_one_message_and_exit_2(tmp_path, case, args, needle):
    from tests.conftest import make_arch

    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "arch.json").write_text(
        make_arch([1, 1, 1, 1], [1, 1, 1, 1], [8] * 4).model_dump_json()
    )
    foo = json.loads((tmp_path / "arch.json").read_text())
    (tmp_path / "arch_foo.json").write_text(json.dumps({**foo, "criterion": "foo"}))
    for name, text in (
        ("truncated", '{"format": 3, "config": {'),
        ("sectionless", '{"format": 3}'),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = cli_in_process(*[a.format(tmp=tmp_path) for a in args])
    assert_refused(result, needle)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "a_file").read_text() == "mine"


@pytest.mark.parametrize("command", ["report", "pick", "finalize"])
def test_a_damaged_pareto_json_is_named_and_left_as_it_is(searched_run, tmp_path, command):
    run = tmp_path / "run"
    shutil.copytree(searched_run, run)
    doc = json.loads((run / "pareto.json").read_text())
    (run / "pareto.json").write_text(json.dumps({**doc, "teacher": {}}))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert_refused(cli_in_process(command, run), "pareto.json is not a ParetoDocument")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
