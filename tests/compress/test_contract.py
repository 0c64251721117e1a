"""The contract every registered technique meets, run over each of them (the built-in ones and
the plugin in tests/toy_techniques.py) on a ResNet and a MobileNetV3: built alone along its
ladder it runs forward and its finished form's packed size never rises; its strongest
setting, trained a few steps with its training hooks, finishes into the shapes measured
before training without changing what it computes, and round-trips through the student file,
through the packed file (whose bytes are its packed size) and through ONNX; its default
dimensions make a valid space."""

from __future__ import annotations

import numpy as np
import onnx
import optuna
import pytest
import timm
import torch

import tests.toy_techniques  # noqa: F401  (registers a plugin: it must meet the contract too)
from automl.compress import get_technique, list_techniques, onnx_format
from automl.compress._act_quant import activation_quant_off
from automl.deploy.onnx import export_fp32, ort_logits, quantize_int8, session
from automl.measure import macs_and_params
from automl.stages import find_stages
from automl.student.build import (
    build_student,
    deploy_form,
    deployed_copy,
    finish_student,
    packed_size_bytes,
    training_hooks,
)
from automl.student.files import fill_state, load_student, save_student, skeleton
from automl.student.packed import pack_student, read_packed
from search_spaces import Architecture, SearchSpaceConfig

TEACHERS = ("resnet18", "mobilenetv3_small_050")
X = torch.randn(8, 1, 16, 16)
Y = torch.randint(0, 10, (8,))
TECHNIQUES = list_techniques()


@pytest.fixture(scope="module", params=TEACHERS)
def teacher(request):
    model = timm.create_model(request.param, in_chans=1, num_classes=10).eval()
    return request.param, model, find_stages(model, X[:1])


def ladder_archs(name: str, stages) -> list[Architecture]:
    ladder = get_technique(name).ladder(stages)
    return [Architecture.compose({name: p}, num_stages=len(stages)) for p in ladder]


def trained(model, stages, arch: Architecture, steps: int = 6):
    """A student of `arch` after `steps` steps of SGD with its techniques' training hooks."""
    student = build_student(model, stages, arch, (X, Y))
    hook = training_hooks(student, arch)
    optimizer = torch.optim.SGD(student.model.parameters(), lr=0.01)
    student.model.train()
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(student.model(X), Y).backward()
        optimizer.step()
        if hook is not None:
            hook(step, steps)
    student.model.eval()
    return student


def strongest(name: str, model, stages) -> tuple[Architecture, torch.nn.Module]:
    """The technique's strongest setting, trained a few steps and finished into its deployed
    form."""
    arch = ladder_archs(name, stages)[-1]
    student = trained(model, stages, arch)
    finish_student(student, arch)
    return arch, student.model


def test_the_registry_holds_the_built_in_techniques_and_the_plugin():
    assert {"channels", "depth", "init", "sparsity", "weight_quant", "half_stages"} <= set(
        TECHNIQUES
    )


@pytest.mark.parametrize("name", TECHNIQUES)
def test_along_its_ladder_it_builds_runs_and_shrinks(teacher, name):
    _, model, stages = teacher
    archs = ladder_archs(name, stages)
    assert len(archs) >= 2, "a ladder goes from a mild to a strong setting"
    sizes = []
    for arch in archs:
        student = build_student(model, stages, arch, (X, Y))
        out = student.model.eval()(X)
        assert out.shape == (8, 10) and torch.isfinite(out).all()
        finish_student(student, arch)
        sizes.append(packed_size_bytes(student, arch))
    assert sizes == sorted(sizes, reverse=True), f"packed size rose along the ladder: {sizes}"
    if get_technique(name).compresses:
        assert sizes[-1] < sizes[0]
    else:
        assert sizes[-1] == sizes[0]


@pytest.mark.parametrize("name", TECHNIQUES)
def test_finishing_keeps_the_function_and_the_shapes_measured_before_training(teacher, name):
    _, model, stages = teacher
    arch = ladder_archs(name, stages)[-1]
    student = build_student(model, stages, arch, (X, Y))
    before_training = macs_and_params(deployed_copy(student, arch), X[:1])
    student = trained(model, stages, arch)
    with torch.no_grad():
        expected = student.model(X)
    finish_student(student, arch)
    assert macs_and_params(student.model, X[:1]) == before_training
    with torch.no_grad():
        torch.testing.assert_close(student.model(X), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", TECHNIQUES)
def test_its_strongest_setting_round_trips_through_the_student_file(teacher, name, tmp_path):
    teacher_name, model, stages = teacher
    arch, student = strongest(name, model, stages)
    path = tmp_path / "student.safetensors"
    save_student(path, student, arch, {})
    loaded, loaded_arch = load_student(path, teacher_name, 1, 10, (16, 16))
    assert loaded_arch == arch
    with torch.no_grad():
        assert torch.allclose(loaded(X), student(X), atol=1e-5)


@pytest.mark.parametrize("name", TECHNIQUES)
def test_its_strongest_setting_is_its_packed_size_as_a_file(teacher, name):
    teacher_name, model, stages = teacher
    arch = ladder_archs(name, stages)[-1]
    built = trained(model, stages, arch)
    finish_student(built, arch)
    figure = packed_size_bytes(built, arch)
    student = built.model
    data = pack_student(student, stages, arch)
    assert abs(len(data) / figure - 1) <= 0.05, (len(data), figure)
    state, loaded_arch, _ = read_packed(data)
    assert loaded_arch == arch
    loaded, _ = skeleton(arch, teacher_name, 1, 10, (16, 16))
    fill_state(loaded, state)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(X), student(X), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", TECHNIQUES)
def test_its_strongest_setting_round_trips_through_onnx(teacher, name, tmp_path):
    _, model, stages = teacher
    arch, student = strongest(name, model, stages)
    fp32 = export_fp32(student, X[:1], tmp_path / "fp32.onnx")
    with torch.no_grad(), activation_quant_off(student):  # the int8 form adds that rounding
        expected = student(X).numpy()
    np.testing.assert_allclose(ort_logits(session(fp32), X.numpy()), expected, atol=1e-3)
    if onnx_format(deploy_form(arch)) == "int8":
        int8 = tmp_path / "int8.onnx"
        quantize_int8(fp32, X.numpy(), int8, model=student)
        ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert ort_logits(session(int8), X.numpy()).shape == (8, 10)


@pytest.mark.parametrize("name", TECHNIQUES)
def test_its_default_space_is_valid_and_samples_what_it_describes(teacher, name):
    _, _, stages = teacher
    technique = get_technique(name)
    space = SearchSpaceConfig.model_validate({"techniques": [name]}).bind(stages)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    arch = space.sample(trial)
    assert arch.techniques == (name,)
    described = technique.describe(arch.params(name))
    assert described and all(isinstance(v, str) for v in described.values())
    assert set(arch.stages[0]) == set(technique.stage_fields())
