"""A property-based probe of bad input: random mutations of a valid config (types, values,
nesting, unknown and duplicate keys, aliases) and of a finished run's documents. The property:
each is read as a config or a run, or refused with one UserError of a readable length; never
another exception, and never a change to a run. `AUTOML_PROBE_EXAMPLES` sets how many
examples each test draws (40 in `make test`; 2,000 for a deep probe)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.config import load_config
from automl.errors import UserError
from automl.run.finished import open_search_run
from tests.conftest import tiny_raw

EXAMPLES = int(os.environ.get("AUTOML_PROBE_EXAMPLES", "40"))
PROBE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MAX_MESSAGE = 6_000  # characters: a message for a person, not a dump of the input

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", ".", "..", "/", "resnet18", "auto", "tpe", "low", "-1", "1e309"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested mapping/list, the containers included."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def mutated(draw, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with 1 to 3 of: a value replaced by any value, a key removed, a key added."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        *parents, leaf = path
        node = doc
        for key in parents:
            node = node[key]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            node[leaf] = draw(values)
        elif action == "remove" and isinstance(node, dict):
            del node[leaf]
        elif isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return doc


def _refused_or_read(call) -> None:
    try:
        call()
    except UserError as exc:
        assert 0 < len(str(exc)) <= MAX_MESSAGE, str(exc)[:300]


@PROBE
@given(data=st.data())
def test_mutated_configs_are_read_or_refused_in_one_message(tmp_path_factory, data):
    base = tiny_raw(Path("/nonexistent/cache"), Path("/nonexistent/run"))
    doc = data.draw(mutated(base))
    path = tmp_path_factory.mktemp("probe") / "c.yaml"
    text = yaml.safe_dump(doc, allow_unicode=True)
    extra = data.draw(st.sampled_from(["", "dup", "alias"]))
    if extra == "dup":  # a section given twice: refused by name
        text += "search: {budget: 1}\nsearch: {budget: 2}\n"
    elif extra == "alias":
        text = "x: &x [1, 2, 3]\n" + text.replace("random", "*x", 1)
    path.write_text(text)
    _refused_or_read(lambda: load_config(path))


@pytest.fixture(scope="module")
def run_files(searched_run) -> dict[str, Any]:
    return {
        name: json.loads((searched_run / name).read_text()) for name in ("run.json", "pareto.json")
    }


@PROBE
@given(data=st.data())
def test_mutated_run_documents_are_read_or_refused_and_left_as_they_are(
    searched_run, run_files, tmp_path_factory, data
):
    run = tmp_path_factory.mktemp("probe") / "run"
    shutil.copytree(searched_run, run, ignore=shutil.ignore_patterns("*-wal", "*-shm", "models"))
    name = data.draw(st.sampled_from(sorted(run_files)))
    (run / name).write_text(json.dumps(data.draw(mutated(run_files[name]))))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _refused_or_read(lambda: open_search_run(run))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
