"""The bad-input corpus: each case is one command of `cli.py` run in this process (typer's
runner) on a config, flag, file or run directory that is wrong, and each must end in one
message naming the problem (exit status 2, no traceback) with nothing written and nothing of
an existing run changed. Add a case with every new config field, flag or command, to its
class of fault:

- `CASES`: a wrong config value, type or key (search); `TEACHER_CASES`: the teacher's;
- config files that are no config (`test_a_config_file_that_is_no_config_is_named`: not text,
  not YAML, a key twice, alias bombs, deep nesting, huge values);
- `OTHER_COMMANDS`: wrong flags and files of the other commands;
- on a copy of a finished run (`RUN_CASES`): `DAMAGED_DOCUMENTS`, `DAMAGED_LAYOUT`,
  `CHANGED_WORLD` (resume), `OVERWRITES`, `UNWRITABLE`, `WRONG_REQUESTS`.

Random mutations of configs and run documents are probed in `test_probe.py`, failing writes
in `test_files.py` and `run/test_write_faults.py`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from automl.compress._criteria import list_criteria
from tests.conftest import cli_in_process, tiny_raw, write_config

KD_INT = {"type": "int"}
SPARSE = ["depth", "channels", "sparsity", "weight_quant"]


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
        {"search.enqueue": [{"criterion": "snip"}]},
        [],
        "search.enqueue.0: criterion: 'snip' is not allowed; the dimension is",
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
    ("empty --out", {}, ["--out", ""], "Invalid value for '--out': an empty path"),
    ("empty out", {"out": ""}, [], "out: an empty path, which would mean the current folder"),
    (
        "empty teacher cache",
        {"teacher.cache_dir": ""},
        [],
        "teacher.cache_dir: an empty path, which would mean the current folder",
    ),
    (
        "proxy subset of all images",
        {"training.train_subset": 10**7},
        [],
        "training.train_subset: 10000000 is no proxy subset of the 1077 training images in 10 "
        "classes; use 10 to 1067",
    ),
    (
        "batch of more than the subset",
        {"training.train_subset": 100, "training.batch_size": 101},
        [],
        "training.batch_size: 101 is more than the 100 images it is drawn from",
    ),
    (
        "sparsity above its limit",
        {"search_space.techniques": SPARSE, "search_space.sparsity": 1.5},
        [],
        "search_space.sparsity: 1.5 is not allowed (Input should be less than or equal to 0.99)",
    ),
    (
        "unknown sparsity scope",
        {"search_space.techniques": SPARSE, "search_space.sparsity_scope": "regional"},
        [],
        "search_space.sparsity_scope: 'regional' is not allowed",
    ),
    (
        "unknown dynamic sparse training",
        {"search_space.techniques": SPARSE, "search_space.sparse_training": "deep_r"},
        [],
        "search_space.sparse_training: 'deep_r' is not allowed (Input should be 'static', 'set' "
        "or 'rigl')",
    ),
    (
        "unknown init",
        {"search_space.techniques": [*SPARSE, "init"], "search_space.init": "scratch"},
        [],
        "search_space.init: 'scratch' is not allowed (Input should be 'inherit', 'rewind' or "
        "'reinit')",
    ),
    (
        "ONNX Runtime latency on cuda",
        {"latency.device": "cuda"},
        [],
        "latency: runtime onnxruntime times the CPU execution provider; for latency on cuda "
        "set latency.runtime: torch",
    ),
    (
        "latency limit of zero",
        {"search.max_latency_ms": 0},
        [],
        "search.max_latency_ms: Input should be greater than 0 (got 0)",
    ),
    (
        "accuracy limit above 1",
        {"search.min_accuracy": 1.5},
        [],
        "search.min_accuracy: Input should be less than or equal to 1 (got 1.5)",
    ),
    (
        "equal-compute cap below the final epochs",
        {"training.final_epochs": 3, "training.final_max_epochs": 2},
        [],
        "final_max_epochs (2) must be at least the epochs of the front's larger models, "
        "final_epochs or epochs (3)",
    ),
    (
        "teacher batch of more than the data",
        {"teacher.batch_size": 2000},
        [],
        "teacher.batch_size: 2000 is more than the 1077 images it is drawn from",
    ),
    (
        "threads past 1024 (torch crashed)",
        {"training.threads": 100_000},
        [],
        "training.threads: Input should be less than or equal to 1024",
    ),
    (
        "latency batch past 1024",
        {"latency.batch_size": 10**6},
        [],
        "latency.batch_size: Input should be less than or equal to 1024",
    ),
    (
        "a step too small to enumerate",
        {"search_space.channel_keep": {"type": "float", "low": 0.25, "high": 1.0, "step": 1e-300}},
        [],
        "search_space.channel_keep: step 1e-300 makes more than 1,000,000 values",
    ),
    (
        "stages of a shared space",
        {"search_space.name": "uniform", "search_space.channel_keep": [0.25, 0.5, 0.5, 0.5]},
        [],
        "search_space.channel_keep: the stages share one value (shared_stages, as in the "
        "'uniform' space)",
    ),
    (
        "list for fewer stages",
        {"search_space.bits": [8, 8]},
        [],
        "search_space.bits: the teacher has 4 stages, the list has 2",
    ),
    (
        "low above high",
        {"search_space.channel_keep": {"type": "float", "low": 0.9, "high": 0.1}},
        [],
        "search_space.channel_keep: `low <= high` must hold",
    ),
    (
        "keep above 1",
        {"search_space.channel_keep": {"type": "float", "low": 0.5, "high": 1.5}},
        [],
        "search_space.channel_keep: 1.5 is not allowed (Input should be less than or equal to 1)",
    ),
    (
        "log range from 0",
        {"search_space.kd_temperature": {"type": "float", "low": 0, "high": 8, "log": True}},
        [],
        "search_space.kd_temperature: a log dimension needs low > 0",
    ),
    (
        "unknown space",
        {"search_space.name": "foo"},
        [],
        "unknown search space 'foo'; registered: ['pruning', 'stagewise', 'uniform']",
    ),
    (
        "technique twice",
        {"search_space.techniques": ["depth", "depth"]},
        [],
        "search_space.techniques: a technique is listed twice",
    ),
    (
        "unknown dimension type",
        {"search_space.bits": {"type": "normal", "values": [8]}},
        [],
        "search_space.bits: Input tag 'normal' found using 'type' does not match",
    ),
    (
        "unknown data source",
        {"data.type": "foo"},
        [],
        "data: Input tag 'foo' found using 'type' does not match any of the expected tags: "
        "'digits', 'idx'",
    ),
    (
        "fractions leave no training data",
        {"data.val_fraction": 0.5, "data.test_fraction": 0.5},
        [],
        "data: `val_fraction + test_fraction < 0.9` must hold",
    ),
    (
        "IDX folder without its files",
        {"data": {"type": "idx", "root": "{tmp}"}},
        [],
        "data.root: {tmp} has none of train-images-idx3-ubyte.gz",
    ),
    (
        "IDX files of noise",
        {"data": {"type": "idx", "root": "{inputs}/idx"}},
        [],
        "data: {inputs}/idx/train-images-idx3-ubyte is not an IDX file (magic number",
    ),
    (
        "CIFAR folder without batches",
        {"data": {"type": "cifar", "root": "{tmp}"}},
        [],
        "data.root: {tmp} holds neither CIFAR-10",
    ),
    (
        "image folder of three images a class",
        {"data": {"type": "image_folder", "root": "{inputs}/three_each"}},
        [],
        "data: 9 images in 3 classes (the smallest has 3) cannot be split by class",
    ),
    (
        "image folder of one class",
        {"data": {"type": "image_folder", "root": "{inputs}/one_class"}},
        [],
        "needs at least 2 class sub-folders, found ['cats']",
    ),
    (
        "checkpoint that is no checkpoint",
        {"teacher.checkpoint": "{tmp}/a_file"},
        [],
        "teacher.checkpoint: {tmp}/a_file is not a weights-only state dict",
    ),
    (
        "checkpoint of another model",
        {"teacher.checkpoint": "{inputs}/resnet10t.pt", "teacher.epochs": 0},
        [],
        "{inputs}/resnet10t.pt does not fit this model: missing",
    ),
    (
        "checkpoint that is a folder",
        {"teacher.checkpoint": "{inputs}", "teacher.epochs": 0},
        [],
        "teacher.checkpoint: {inputs} is a folder, not a file",
    ),
    (
        "unknown section",
        {"serach": {"budget": 1}},
        [],
        "serach: unknown key; allowed: data, device, latency, name, out, plugins",
    ),
    ("name with a slash", {"name": "../x"}, [], "name: String should match pattern"),
    ("name of dots", {"name": ".."}, [], "name: '..' is no folder of its own"),
    ("a run directory in /proc", {}, ["--out", "/proc/automl/run"], "cannot write /proc/automl"),
    (
        "a time budget in words",
        {},
        ["--time-budget", "soon"],
        "--time-budget (search.time_budget): 'soon' is no duration; give seconds, or a number",
    ),
    ("a negative time budget", {"search.time_budget": -5}, [], "a duration is more than 0"),
    (
        "a plugin that exits",
        {"plugins": ["tests.exit_plugin"]},
        [],
        "plugins: importing 'tests.exit_plugin' called sys.exit(0)",
    ),
    (
        "split seed past numpy's",
        {"data.split_seed": 2**32},
        [],
        "data.split_seed: Input should be less than 2147483648",
    ),
    (
        "no epochs",
        {},
        ["--epochs", "0"],
        "--epochs (training.epochs): Input should be greater than or equal to 1",
    ),
    (
        "no trials at once",
        {},
        ["--max-concurrent", "0"],
        "--max-concurrent (ray.max_concurrent): Input should be greater than or equal to 1",
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Files the cases read and that must stay as they are: IDX files of noise, an image
    folder of one class, weights of another model."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "idx").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, 100, dtype=np.uint8).tobytes()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / "idx" / name).write_bytes(noise)
    (root / "one_class" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "one_class" / "cats" / "0.png")
    for name in ("cats", "dogs", "owls"):  # passes "at least 3 a class", splits into none
        (root / "three_each" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "three_each" / name / f"{i}.png")
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), root / "resnet10t.pt")
    return root


def _filled(value: Any, **places: Path) -> Any:
    """`value` with {tmp}-style places filled in, in strings at any depth."""
    if isinstance(value, str):
        return value.format(**places)
    if isinstance(value, dict):
        return {k: _filled(v, **places) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, **places) for v in value]
    return value


def run_with_changes(
    command: str, teacher_cache: Path, tmp_path: Path, inputs: Path, changes, flags
) -> Any:
    """`command --config C FLAGS`, C the tiny config with the dotted `changes`."""
    places = {"tmp": tmp_path, "inputs": inputs}
    raw = tiny_raw(teacher_cache, tmp_path / "run")
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = _filled(value, **places)
    (tmp_path / "a_file").write_text("mine")
    flags = [_filled(f, **places) for f in flags]
    return cli_in_process(command, "--config", write_config(tmp_path / "c.yaml", raw), *flags)


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("case", "changes", "flags", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_search_input_is_one_message_and_exit_2(
    tiny, teacher_cache, tmp_path, inputs, case, changes, flags, needle
):
    before = _digest(inputs)
    result = run_with_changes("search", teacher_cache, tmp_path, inputs, changes, flags)
    assert_refused(result, needle.format(tmp=tmp_path, inputs=inputs))
    assert not (tmp_path / "run").exists() and (tmp_path / "a_file").read_text() == "mine"
    assert _digest(inputs) == before


def test_a_refused_search_leaves_no_folder_it_made(tiny, teacher_cache, tmp_path, inputs):
    """The run directory's missing parents are the command's too: none is left behind."""
    changes = {
        "data": {"type": "image_folder", "root": "{inputs}/one_class"},
        "out": "{tmp}/new1/deeper/run",
    }
    result = run_with_changes("search", teacher_cache, tmp_path, inputs, changes, [])
    assert_refused(result, "one_class")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "c.yaml"]


def test_a_pipe_as_config_and_a_bad_criterion_are_refused_before_any_work(tmp_path):
    """A FIFO would block the read for ever; a criterion is checked before the teacher
    trains (the cache stays empty)."""
    os.mkfifo(tmp_path / "fifo")
    result = cli_in_process("search", "--config", tmp_path / "fifo")
    assert_refused(result, "fifo is no regular file (a pipe, a device or a socket)")
    cache = tmp_path / "cache"
    config = write_config(tmp_path / "c.yaml", tiny_raw(cache))
    result = cli_in_process("sensitivity", "--config", config, "--criterion", "foo")
    assert_refused(result, "sensitivity: --criterion: unknown pruning criterion 'foo'")
    assert not cache.exists()


def test_an_nni_criterion_without_the_extra_is_one_message_and_exit_2(
    tiny, teacher_cache, tmp_path, inputs, monkeypatch
):
    """As on a machine without `pip install '.[nni]'` (this one has it: the dev extra)."""
    from automl.compress import _criteria

    monkeypatch.setattr(_criteria, "nni_installed", lambda: False)
    changes = {"search_space.criterion": {"type": "choice", "values": ["l2", "nni_fpgm"]}}
    result = run_with_changes("search", teacher_cache, tmp_path, inputs, changes, [])
    assert_refused(result, "'nni_fpgm' needs NNI, an optional extra: pip install '.[nni]'")
    assert not (tmp_path / "run").exists()


TEACHER_CASES: list[tuple[str, dict[str, Any], list[str], str]] = [
    (
        "unknown timm model",
        {"teacher.model": "resnet19"},
        [],
        "teacher.model: unknown timm model 'resnet19'; did you mean resnet18",
    ),
    (
        "negative seed",
        {},
        ["--seed", "-1"],
        "--seed (teacher.seed): Input should be greater than or equal",
    ),
    (
        "a dict of no tensors",
        {"teacher.checkpoint": "{tmp}/not_tensors.pt", "teacher.epochs": 0},
        [],
        "teacher.checkpoint: {tmp}/not_tensors.pt does not hold a state dict of tensors",
    ),
    ("untrained", {"teacher.epochs": 0}, [], "teacher.epochs: 0 trains nothing"),
    (
        "a device as checkpoint",
        {"teacher.checkpoint": "/dev/zero"},
        [],
        "teacher.checkpoint: /dev/zero is no regular file (a pipe, a device or a socket)",
    ),
    (
        "batch of more than the data",
        {"teacher.batch_size": 4096},
        [],
        "teacher.batch_size: 4096 is more than the 1077 images it is drawn from",
    ),
    ("empty cache", {"teacher.cache_dir": ""}, [], "teacher.cache_dir: an empty path"),
    ("empty --config", {}, ["--config", ""], "Invalid value for '--config' / '-c': an empty path"),
]


@pytest.mark.parametrize(
    ("case", "changes", "flags", "needle"), TEACHER_CASES, ids=[c[0] for c in TEACHER_CASES]
)
def test_bad_teacher_input_is_one_message_and_exit_2(
    tiny, teacher_cache, tmp_path, inputs, case, changes, flags, needle
):
    torch.save({"a": 1}, tmp_path / "not_tensors.pt")
    before = _digest(teacher_cache)
    result = run_with_changes("teacher", teacher_cache, tmp_path, inputs, changes, flags)
    assert_refused(result, needle.format(tmp=tmp_path, inputs=inputs))
    assert _digest(teacher_cache) == before  # no teacher trained or cached
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "c.yaml", "not_tensors.pt"]


# nine levels of nine aliases each: 9**9 values, about 387 million, in 10 lines
BILLION_LAUGHS = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode()
    for i in range(8)
)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (bytes(range(256)), "not a text file (a YAML config is UTF-8 text)"),
        (b"", "is empty; leave out --config to run the defaults (digits.yaml)"),
        (b"# only a comment\n", "is empty; leave out --config"),
        (b"search: [1, 2\n", "not valid YAML"),
        (b"- a list\n", "the top level must be a mapping of sections"),
        (
            b"search: {budget: -1}\nsearch: {budget: 3}\n",
            "key 'search' is given twice in one mapping",
        ),
        (BILLION_LAUGHS, "holds more than 10,000 values once its aliases (*name) are expanded"),
        (b"name: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nests too deeply"),
        (b"name: " + b"[" * 40 + b"]" * 40 + b"\n", "nests more than 32 levels deep"),
        (b"name: [" + b"x" * 1_000_000 + b"]\n", "(1,000,0"),  # the value, capped
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
        "train: --out over a saved model (an export)",
        ["train", "{tmp}/arch.json", "--out", "{tmp}/export"],
        "export/model.safetensors already exists; choose a new folder",
    ),
    (
        "train: --out in /proc",
        ["train", "{tmp}/arch.json", "--out", "/proc/automl/model"],
        "cannot write /proc/automl",
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
        f"unknown pruning criterion 'foo'; known: {list_criteria()}",
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
    ("report: an empty path", ["report", ""], "Invalid value for 'RUN': an empty path"),
    ("finalize: a file as run", ["finalize", "{tmp}/a_file"], "a_file"),
    ("pick: a fraction past 1", ["pick", "{tmp}/run", "--min-accuracy", "2"], "in [0, 1], got 2"),
    ("pick: an empty --out", ["pick", "{tmp}/run", "--out", ""], "'--out': an empty path"),
    ("train: no such file", ["train", "{tmp}/none.json"], "architecture: file not found"),
    ("train: a folder", ["train", "{tmp}/truncated"], "truncated is a folder, not a file"),
    (
        "train: --run and --config",
        ["train", "{tmp}/arch.json", "--run", "{tmp}/r", "--config", "{tmp}/c"],
        "give either --run or --config, not both",
    ),
    (
        "train: 99 bits",
        ["train", "{tmp}/arch_99.json"],
        "bits.0: Input should be less than or equal to 32",
    ),
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
    stages = [{**stage, "bits": 99} for stage in foo["stages"]]
    (tmp_path / "arch_99.json").write_text(json.dumps({**foo, "stages": stages}))
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.safetensors").write_bytes(b"an exported model's weights")
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


def _damage(run: Path, damage: str) -> None:
    """Damage a copy of a finished run as a crash, a disk or a user might."""
    pareto, runjson, study = run / "pareto.json", run / "run.json", run / "study.db"
    if damage == "pareto without teacher":
        pareto.write_text(json.dumps({**json.loads(pareto.read_text()), "teacher": {}}))
    elif damage == "pareto of a newer format":
        pareto.write_text(json.dumps({**json.loads(pareto.read_text()), "format": 99}))
    elif damage == "run.json of a newer format":
        runjson.write_text(json.dumps({**json.loads(runjson.read_text()), "format": 99}))
    elif damage == "truncated pareto":
        pareto.write_bytes(pareto.read_bytes()[:50])
    elif damage == "truncated run.json":
        runjson.write_bytes(runjson.read_bytes()[:50])
    elif damage == "truncated study.db":
        study.write_bytes(study.read_bytes()[:4096])
    elif damage == "study.db of noise":
        study.write_bytes(b"noise" * 1000)
    elif damage == "no study.db":
        study.unlink()
    elif damage in EDITS:
        file, dotted, value = EDITS[damage]
        _edit(run / file, dotted, value)
    elif damage == "old results, no run.json or study.db":
        runjson.unlink()
        study.unlink()
    elif damage == "no models":
        shutil.rmtree(run / "models")
    elif damage == "deep run.json":
        runjson.write_text("[" * 100_000 + "]" * 100_000)
    elif damage.endswith(" a folder"):
        path = run / damage.removesuffix(" a folder")
        path.unlink()
        path.mkdir()
    elif damage == "models a file":
        shutil.rmtree(run / "models")
        (run / "models").write_text("not a folder")
    elif damage != "none":
        raise AssertionError(damage)


# damage -> (file, dotted key, new value): a run document edited by hand
EDITS: dict[str, tuple[str, str, Any]] = {
    "teacher.epochs edited": ("run.json", "config.teacher.epochs", 7),
    "data.image_size edited": ("run.json", "config.data.image_size", 20),
    "training.epochs edited": ("run.json", "config.training.epochs", 3),
    "techniques edited": ("run.json", "config.search_space.techniques", SPARSE),
    "plugins edited": ("run.json", "config.plugins", ["tests.fault_technique"]),
    "data changed": ("run.json", "data.fingerprint", "0123456789abcdef"),
    "teacher changed": ("run.json", "teacher.fingerprint", "0123456789abcdef"),
    "format null": ("run.json", "format", None),
    "format a string": ("pareto.json", "format", "4"),
    "config a list": ("run.json", "config", [1, 2]),
    "front an int": ("pareto.json", "front", 3),
}


def _edit(path: Path, dotted: str, value: Any) -> None:
    doc = json.loads(path.read_text())
    node = doc
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    path.write_text(json.dumps(doc))


RESUME = ["search", "--resume", "--out", "{run}", "--budget", "6"]


# Cases on a copy of a finished run, by class of fault: (damage, arguments after the command
# with {run} and {tmp}, what the message must say). Add a case to its class.
RunCase = tuple[str, list[str], str]

DAMAGED_DOCUMENTS: list[RunCase] = [  # a crash, a disk or an editor broke a run document
    *[
        (damage, [command, "{run}"], needle)
        for damage, needle in (
            ("pareto without teacher", "pareto.json is not a ParetoDocument"),
            ("pareto of a newer format", "pareto.json is of format 99, written by a newer"),
            ("truncated pareto", "pareto.json is not valid JSON"),
            ("truncated run.json", "run.json is not valid JSON"),
        )
        for command in ("report", "pick", "finalize")
    ],
    ("run.json of a newer format", ["report", "{run}"], "run.json is of format 99"),
    ("run.json of a newer format", RESUME, "run.json is of format 99"),
    ("format null", ["report", "{run}"], "run.json is not a RunDocument of this tool (format:"),
    ("format a string", ["pick", "{run}"], "pareto.json is not a ParetoDocument of this tool"),
    ("config a list", ["report", "{run}"], "run.json is not a RunDocument of this tool (config"),
    ("config a list", RESUME, "run.json is not a RunDocument of this tool (config"),
    ("front an int", ["report", "{run}"], "pareto.json is not a ParetoDocument of this tool"),
    ("deep run.json", ["report", "{run}"], "run.json is not a RunDocument: it nests too deeply"),
]

DAMAGED_LAYOUT: list[RunCase] = [  # a part of the run directory missing or of the wrong kind
    (
        "truncated study.db",
        RESUME,
        "study.db cannot be read as an Optuna study (database disk image is malformed)",
    ),
    ("study.db of noise", RESUME, "study.db cannot be read as an Optuna study (file is not a"),
    ("no study.db", RESUME, "study.db is missing; the run's trials are recorded there"),
    ("no models", ["report", "{run}"], "are missing:"),
    ("no models", ["pick", "{run}"], "are missing:"),
    ("pareto.json a folder", ["report", "{run}"], "pareto.json is a folder where the run's"),
    ("trials.csv a folder", RESUME, "trials.csv is a folder where the run's file belongs"),
    ("trials.csv a folder", ["pick", "{run}"], "trials.csv is a folder where the run's file"),
    ("models a file", ["report", "{run}"], "models is a file where the run's folder belongs"),
    ("models a file", RESUME, "models is a file where the run's folder belongs"),
]

CHANGED_WORLD: list[RunCase] = [  # a resume into a world that is not the run's
    (
        "teacher.epochs edited",
        RESUME,
        "differs from the one the run began with: teacher.epochs was 6, is 7",
    ),
    ("data.image_size edited", RESUME, "data.image_size was 16, is 20"),
    ("training.epochs edited", RESUME, "training.epochs was 2, is 3"),
    ("techniques edited", RESUME, "techniques was ['depth', 'channels', 'weight_quant'], is"),
    ("plugins edited", RESUME, "plugins was [], is ['tests.fault_technique']"),
    ("data changed", RESUME, "the data found now differ from the data the run began with"),
    ("teacher changed", RESUME, "the teacher's recipe differs from the one the run began"),
    ("none", ["search", "--resume", "--out", "{run}", "--seed", "5"], "seed is 0 in the run, 5"),
    (
        "none",
        ["search", "--resume", "--out", "{run}", "--budget", "2"],
        "--resume --budget 2 is below the run's budget of 4 trials",
    ),
]

OVERWRITES: list[RunCase] = [  # a command that would write over results it did not write
    (
        "none",
        ["search", "--out", "{run}", "--config", "{run}/../c.yaml"],
        "already holds a run (run.json, study.db, trials.csv, pareto.json, report.html, models); "
        "continue it with --resume",
    ),
    (
        "old results, no run.json or study.db",
        ["search", "--out", "{run}", "--config", "{run}/../c.yaml"],
        "already holds a run (trials.csv, pareto.json, report.html, models); its results",
    ),
    ("none", ["pick", "{run}", "--out", "{tmp}/a_file"], "a_file already exists and is not"),
    ("none", ["pick", "{run}", "--out", "."], "--out . is no new folder"),
]

UNWRITABLE: list[RunCase] = [  # an output path that cannot be written
    ("none", ["pick", "{run}", "--out", "{tmp}/a_file/x"], "a_file is a file, not a folder"),
    ("none", ["pick", "{run}", "--out", "/proc/automl/model"], "cannot write /proc/automl:"),
]

WRONG_REQUESTS: list[RunCase] = [  # a request the run cannot meet
    (
        "none",
        ["search", "--resume", "--out", "{run}", "--time-budget", "soon"],
        "--time-budget (search.time_budget): 'soon' is no duration",
    ),
    ("none", ["finalize", "{run}"], "is no proxy search: its students trained on every"),
    ("none", ["pick", "{run}", "--trial", "999"], "trial 999 is not on the Pareto front"),
    ("none", ["report", "{run}", "--batch", "2000"], "'--batch': Input should be less than"),
    (
        "none",
        ["train", "{tmp}/one_stage.json", "--run", "{run}"],
        "the architecture has 1 stages, the teacher 4",
    ),
]

RUN_CASES = [
    *DAMAGED_DOCUMENTS,
    *DAMAGED_LAYOUT,
    *CHANGED_WORLD,
    *OVERWRITES,
    *UNWRITABLE,
    *WRONG_REQUESTS,
]


@pytest.mark.parametrize(
    ("damage", "args", "needle"),
    RUN_CASES,
    ids=[
        f"{c[0]}: {' '.join(c[1][:1] + [a for a in c[1][1:] if a.startswith('--')])}"
        for c in RUN_CASES
    ],
)
def test_bad_input_on_a_run_is_named_and_the_run_left_as_it_is(
    searched_run, teacher_cache, tmp_path, damage, args, needle
):
    run = tmp_path / "run"
    # a damaged study.db without SQLite's -wal and -shm files, which exist only while this
    # test session still holds the searched run's study open: reading it beside them would
    # read their pages instead, or update the -shm index, and the cases would depend on test
    # order; an intact one with them (without, it would hold no trials yet), folded into the
    # copy's study.db, so that reading the copy changes no file
    damaged = shutil.ignore_patterns("*-wal", "*-shm") if "study" in damage else None
    shutil.copytree(searched_run, run, ignore=damaged)
    if damaged is None:
        _fold_wal(run)
    _damage(run, damage)
    (tmp_path / "a_file").write_text("mine")
    write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache))
    stage = {"channel_keep": 1.0, "blocks": 1, "bits": 8}
    (tmp_path / "one_stage.json").write_text(json.dumps({"stages": [stage], "criterion": "l2"}))
    before = _digest(tmp_path)
    result = cli_in_process(*[a.format(run=run, tmp=tmp_path) for a in args])
    assert_refused(result, needle)
    if damaged is None:  # what the command wrote to the study, if anything, into study.db
        _fold_wal(run)
    assert _digest(tmp_path) == before


def _fold_wal(run: Path) -> None:
    """Fold SQLite's write-ahead log into study.db and remove it and its index (-wal, -shm),
    so study.db alone holds what was written, however many connections are still open."""
    if (run / "study.db").is_file():
        with contextlib.closing(sqlite3.connect(run / "study.db")) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for name in ("study.db-wal", "study.db-shm"):
        (run / name).unlink(missing_ok=True)
