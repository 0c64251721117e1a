"""8-bit activation fake-quantization: ONNX Runtime's scale and zero point, a moving range,
straight-through gradients, a quantizer per layer that survives copies and reloads, and an
int8 export that takes the trained ranges and weight scales instead of recalibrating."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnxruntime.quantization.quant_utils import compute_scale_zp
from torch import nn

from automl.compress._act_quant import (
    MOMENTUM,
    QMAX,
    ActQuant,
    activation_quant_off,
    attach_input_quant,
    fake_quantize,
    input_quant,
    uint8_params,
)
from automl.compress.weight_quant import WEIGHT_BITS
from automl.deploy.check import deploy_onnx
from automl.deploy.onnx import export_fp32, quantize_int8
from automl.student.build import deploy_form
from automl.student.files import load_student, save_student
from automl.trial import run_trial
from tests.conftest import make_arch


@pytest.mark.parametrize("low, high", [(-1.3, 2.7), (0.0, 5.0), (0.2, 0.9), (-4.0, -1.0)])
def test_scale_and_zero_point_are_onnx_runtime_s(low, high):
    qmin, qmax = np.array(0, np.uint8), np.array(255, np.uint8)
    zero, scale = compute_scale_zp(np.float32(low), np.float32(high), qmin, qmax, False)
    ours = uint8_params(low, high)
    assert ours[0] == pytest.approx(float(scale), rel=1e-6) and ours[1] == int(zero)


@pytest.mark.parametrize("seed", range(5))
def test_the_tensor_form_of_the_parameters_is_uint8_params_exactly(seed):
    """Training steps use scale and zero point computed as tensors (no host sync on a GPU);
    they must be the export's (`uint8_params`, ONNX Runtime's) to the bit."""
    g = torch.Generator().manual_seed(seed)
    quant = ActQuant()
    for _ in range(50):
        low, high = sorted((torch.randn(2, generator=g) * 10 ** (seed - 2)).tolist())
        quant.low.fill_(low)
        quant.high.fill_(high)
        scale, zero = quant.tensor_params()
        assert (float(scale), int(zero)) == quant.params()
        assert scale.dtype == torch.float32 and zero.dtype == torch.int32


def test_the_range_moves_with_training_and_holds_in_eval():
    quant = ActQuant()
    x = torch.linspace(-1, 3, 100)
    assert torch.equal(quant.eval()(x), x)  # nothing observed yet: passes through
    quant.train()(x)
    assert (float(quant.low), float(quant.high)) == (-1.0, 3.0)  # the first batch sets it
    quant(2 * x)
    assert float(quant.high) == pytest.approx(3 + MOMENTUM * 3)
    quant.eval()
    out = quant(10 * x)
    assert len(torch.unique(out)) <= 256 and float(out.max()) <= float(quant.high) + 1e-6
    assert float(quant.high) == pytest.approx(3 + MOMENTUM * 3)  # eval leaves it


def test_gradients_pass_inside_the_range_and_stop_outside():
    quant = ActQuant()
    quant.low.fill_(-1.0)
    quant.high.fill_(1.0)
    x = torch.tensor([-2.0, -0.5, 0.3, 2.0], requires_grad=True)
    quant.eval()(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("seed", range(4))
def test_fake_quantize_is_torch_s_op_to_the_bit_values_and_gradients(seed):
    """The elementwise `fake_quantize` replaces torch's fused op (5x slower on a CPU): the same
    values to the bit, ties at half a step included, and the same gradient, over ranges that
    leave inputs on both sides outside, in both memory orders."""
    g = torch.Generator().manual_seed(seed)
    quant = ActQuant()
    low, high = sorted((torch.randn(2, generator=g) * 10 ** (seed - 1)).tolist())
    quant.low.fill_(low)
    quant.high.fill_(high)
    scale, zero = quant.tensor_params()
    spread = 1.5 * max(abs(low), abs(high), 1e-3)
    x = (torch.rand(8, 16, 7, 7, generator=g) * 2 - 1) * spread
    steps = torch.randint(-300, 300, (8, 16, 7, 7), generator=g)
    x[::2] = (steps[::2] + 0.5) * scale  # exact ties, where the rounding rule shows
    for memory in (torch.contiguous_format, torch.channels_last):
        ours_x = x.clone().contiguous(memory_format=memory).requires_grad_()
        torch_x = x.clone().requires_grad_()
        ours = fake_quantize(ours_x, scale, zero)
        want = torch.fake_quantize_per_tensor_affine(torch_x, scale, zero, 0, QMAX)
        assert torch.equal(ours, want)
        upstream = torch.randn(x.shape, generator=g)
        ours.backward(upstream)
        want.backward(upstream)
        assert torch.equal(ours_x.grad, torch_x.grad)
        assert 0 < int((torch_x.grad == 0).sum()) < x.numel()  # some inputs fell outside
    with torch.no_grad():
        assert torch.equal(fake_quantize(x, scale, zero), want.detach())


def test_the_hook_quantizes_the_layer_s_own_input_in_copies_and_turns_off():
    layer = nn.Linear(4, 2)
    attach_input_quant(layer).train()
    layer(torch.randn(8, 4))
    twin = copy.deepcopy(layer)
    twin.input_quant.low.fill_(-100.0)  # the copy's quantizer, not the original's
    assert float(layer.input_quant.low) != -100.0
    x = torch.randn(3, 4)
    layer.eval()
    with torch.no_grad(), activation_quant_off(layer):
        plain = layer(x)
    assert torch.equal(plain, nn.functional.linear(x, layer.weight, layer.bias))
    assert not torch.equal(layer(x), plain)
    assert input_quant(layer) is layer.input_quant and input_quant(nn.Linear(1, 1)) is None


@pytest.fixture(scope="module")
def trained(tiny):
    """A digits student with 4-bit stages, trained with uint8 activations, and its int8 export."""
    arch = make_arch([0.25] * 4, [1, 1, 1, 1], [4] * 4, act_bits=8)
    _, model = run_trial(arch, tiny.trial_context(), seed=0)
    tmp = Path(tempfile.mkdtemp())
    dep = deploy_onnx(model, deploy_form(arch), tiny.data, tmp / "m.onnx")
    return arch, model, dep


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_every_quantized_layer_observed_its_input_and_a_reload_keeps_it(trained, tiny, tmp_path):
    arch, model, _ = trained
    layers = _layers(model)
    assert layers and all(input_quant(m) is not None and input_quant(m).observed for m in layers)
    assert {getattr(m, WEIGHT_BITS) for m in layers} == {4, 8}  # stages 4, stem and head 8
    save_student(tmp_path / "s.safetensors", model, arch, {})
    again, _ = load_student(tmp_path / "s.safetensors", "resnet18", 1, 10, (16, 16))
    x = tiny.data.test.images(torch.arange(64))
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert all(input_quant(m).observed for m in _layers(again))


def test_the_int8_export_quantizes_at_the_trained_ranges_and_codes(trained):
    _, model, dep = trained
    graph = onnx.load(str(dep.path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantize = {n.input[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    ranges = {input_quant(m).params() for m in _layers(model)}
    assert dep.format == "int8" and dep.trained_tensors > len(ranges)
    # the image and each activation entering a convolution: the trained scale, exactly
    found = {
        (float(values[n.input[1]]), int(values[n.input[2]]))
        for n in quantize.values()
        if n.input[1] in values
    }
    for scale, zero in ranges:
        assert any(z == zero and abs(s - scale) <= 1e-6 * scale for s, z in found)
    # 4-bit weights keep their 4-bit codes in the int8 file
    codes = [
        values[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and values.get(n.input[0]) is not None
        and values[n.input[0]].dtype == np.int8
        and values[n.input[0]].ndim == 4
    ]
    widths = sorted(int(np.abs(c).max()) for c in codes)
    assert widths[0] <= 7 and widths[-1] == 127  # stages at 4 bits, the stem at 8


def test_without_a_model_every_tensor_is_calibrated(trained, tiny, tmp_path):
    _, model, _ = trained
    fp32 = export_fp32(model, tiny.data.example_input(1), tmp_path / "fp32.onnx")
    images = tiny.data.train.images(torch.arange(32)).numpy()
    assert quantize_int8(fp32, images, tmp_path / "a.onnx") == 0
    assert quantize_int8(fp32, images, tmp_path / "b.onnx", model=model) > 0


def test_learned_steps_reach_the_int8_file_exactly(tiny, tmp_path):
    """A student with learned 4-bit steps (LSQ), whose largest codes need not be 7: every
    weight the int8 file dequantizes equals the float32 export's folded weight."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    arch = make_arch([0.25] * 4, [1, 1, 1, 1], [4] * 4, act_bits=8, quantizer="lsq")
    _, model = run_trial(arch, tiny.trial_context(), seed=0)
    fp32 = export_fp32(model, tiny.data.example_input(1), tmp_path / "fp32.onnx")
    quant_pre_process(str(fp32), str(tmp_path / "prepared.onnx"))
    folded = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(str(tmp_path / "prepared.onnx")).graph.initializer
    }
    images = tiny.data.train.images(torch.arange(32)).numpy()
    assert quantize_int8(fp32, images, tmp_path / "int8.onnx", model=model) > 0
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    checked, short = 0, 0
    for node in graph.node:
        codes = values.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if codes is None or codes.dtype != np.int8 or codes.ndim < 2:
            continue
        scale = values[node.input[1]].reshape(-1, *[1] * (codes.ndim - 1))
        original = folded[node.input[0].removesuffix("_quantized")]
        assert np.allclose(codes * scale, original, rtol=1e-5, atol=1e-7), node.input[0]
        checked += 1
        short += int(np.abs(codes).max(axis=tuple(range(1, codes.ndim))).min() < 7)
    assert checked == len(_layers(model))
    assert short > 0  # some channel's largest learned code is below 7: min-max's rule would miss
