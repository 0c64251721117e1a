"""The deployed runtime: ONNX export, int8 static quantization, ONNX Runtime sessions.

Students whose weights are all at most 8 bits (their techniques' `DeployForm`) are deployed
as int8 QDQ models made by ONNX Runtime's static quantization (per-channel int8 weights, uint8
activations); ONNX Runtime fuses each DequantizeLinear -> Conv -> QuantizeLinear into an
integer kernel. Where the student trained with quantized activations and weights, the export
takes the trained ranges and scales (`trained_overrides`), so it computes what was trained;
the tensors training did not quantize are calibrated on training images. Wider students and
the teacher are deployed as fp32. Bit-widths below 8 are stored as int8 in the ONNX file:
ONNX Runtime has no sub-byte kernels, so they bring no speed or file-size gain there (only
the packed size counts them).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from automl.compress._act_quant import activation_quant_off, input_quant
from automl.compress.weight_quant import WEIGHT_BITS, code_scales

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def export_fp32(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export `model` (eval mode, CPU) to ONNX with a dynamic batch axis. BatchNorm is folded
    into the convolutions by the exporter's constant folding."""
    model = model.cpu().eval()
    with warnings.catch_warnings(), activation_quant_off(model):
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; for these CNNs both give the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example.cpu(),),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return path


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over an array of images."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        self._batches: Iterator[np.ndarray] = (
            images[i : i + batch_size] for i in range(0, len(images), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(
    fp32_path: Path,
    calibration: np.ndarray,
    path: Path,
    reduce_range: bool = False,
    model: nn.Module | None = None,
) -> int:
    """Static int8 QDQ quantization of `fp32_path` to `path`, calibrated (min-max) on
    `calibration` images (N, C, H, W float32). `reduce_range` uses 7-bit weights, which avoids
    the u8s8 saturation of AVX2/AVX-512 kernels without VNNI. With `model` (the PyTorch model
    `fp32_path` was exported from), its trained ranges and scales replace calibration where it
    has them (`trained_overrides`); returns how many tensors took them. Linear layers' outputs
    stay float (the logits)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        overrides = (
            {}
            if model is None
            else trained_overrides(model, calibration[:1], prepared, reduce_range)
        )
        quantize_static(
            str(prepared),
            str(path),
            _Calibration(calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            # float logits: uint8 logits flip the class of images whose top two are close
            # (BENCHMARKS.md, trained-scale int8), and cost nothing to keep
            extra_options={
                "TensorQuantOverrides": overrides,
                "OpTypesToExcludeOutputQuantization": ["Gemm"],
            },
        )
    return len(overrides)


def trained_overrides(
    model: nn.Module, example: np.ndarray, onnx_path: Path, reduce_range: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """ONNX Runtime `TensorQuantOverrides` that quantize `onnx_path` (exported from `model`)
    as `model` trained: the input of each Conv and Gemm whose PyTorch layer has an observed
    `input_quant` at that quantizer's scale and zero point, and each fake-quantized weight
    (a layer with `WEIGHT_BITS` of at most 8) at a per-channel scale that keeps its trained
    integer codes (`code_scales`). With `reduce_range`, 8-bit weights are left to ONNX
    Runtime's 7-bit quantization, which is what that retry asks for.

    ONNX nodes are matched to PyTorch layers by execution order, checked by weight shape; when
    they do not match, nothing is overridden (every tensor is calibrated)."""
    import onnx
    from onnx import numpy_helper

    layers = _execution_order(model, torch.from_numpy(example))
    graph = onnx.load(str(onnx_path)).graph
    weights = {init.name: init for init in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    if len(nodes) != len(layers) or any(
        len(n.input) < 2
        or n.input[1] not in weights
        or tuple(weights[n.input[1]].dims) != tuple(m.weight.shape)
        for n, m in zip(nodes, layers, strict=False)
    ):
        return {}
    overrides: dict[str, list[dict[str, Any]]] = {}
    makers = {out: n for n in graph.node for out in n.output}
    for node, layer in zip(nodes, layers, strict=True):
        quant = input_quant(layer)
        if quant is not None and quant.observed and node.input[0] not in overrides:
            scale, zero = quant.params()
            same = [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero, np.uint8)}]
            for tensor in _passed_through(makers, node.input[0]):
                overrides.setdefault(tensor, same)
        bits = getattr(layer, WEIGHT_BITS, 32)
        if bits < 8 or (bits == 8 and not reduce_range):
            scales = code_scales(numpy_helper.to_array(weights[node.input[1]]), bits)
            if scales is not None:
                zero = np.array(0, np.int8)
                overrides[node.input[1]] = [
                    {"axis": 0, "scale": np.array(s, np.float32), "zero_point": zero}
                    for s in scales
                ]
    return overrides


# ONNX Runtime quantizes these ops' output with their input's scale and zero point; each keeps
# its input's values (reshapes) or commutes with a monotone rounding (max-pooling), so an
# activation range observed after them holds before them too
_SAME_AS_INPUT = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "MaxPool")


def _passed_through(makers: dict[str, Any], tensor: str) -> list[str]:
    """`tensor` and, back through every _SAME_AS_INPUT op that makes it (`makers`: each
    tensor's producing node), the tensors it comes from: ONNX Runtime gives them one scale and
    zero point, the first one's."""
    chain = [tensor]
    while chain[-1] in makers and makers[chain[-1]].op_type in _SAME_AS_INPUT:
        chain.append(makers[chain[-1]].input[0])
    return chain


def _execution_order(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The convolutions and linear layers of `model` in the order a forward pass calls them
    (the order the ONNX exporter writes their nodes in)."""
    order: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda mod, _args, _out: order.append(mod))
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad(), activation_quant_off(model):
            model.cpu().eval()(example.float())
    finally:
        for h in handles:
            h.remove()
    return order


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latency_ms(
    model: nn.Module,
    int8: bool,
    example: torch.Tensor,
    calibration: np.ndarray,
    *,
    repeats: int = 50,
    warmup: int = 10,
    threads: int = 1,
) -> float:
    """Median wall time of `repeats` ONNX Runtime calls on `example` after `warmup` untimed
    ones, of `model` (deployed form, eval, CPU) as `pick` ships it: int8 QDQ calibrated on
    `calibration` images when `int8`, else fp32. Exported and quantized in a temporary
    folder; the figure, not the file, is kept."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_fp32(model, example[:1], Path(tmp) / "fp32.onnx")
        if int8:
            quantize_int8(path, calibration, Path(tmp) / "int8.onnx", model=model)
            path = Path(tmp) / "int8.onnx"
        sess = session(path, threads)
        x = {INPUT_NAME: example.cpu().numpy().astype(np.float32)}
        for _ in range(warmup):
            sess.run(None, x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            sess.run(None, x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def ort_logits(sess: ort.InferenceSession, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    out = [
        sess.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size]})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def ort_accuracy(sess: ort.InferenceSession, images: np.ndarray, labels: np.ndarray) -> float:
    return float((ort_logits(sess, images).argmax(1) == labels).mean())
