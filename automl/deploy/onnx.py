"""The deployed runtime: ONNX export, int8 static quantization, ONNX Runtime sessions.

Students whose weights are all at most 8 bits (their techniques' `DeployForm`) are deployed
as int8 QDQ models made by ONNX Runtime's static quantization (per-channel int8 weights, uint8
activations, calibrated on training images); ONNX Runtime fuses each DequantizeLinear -> Conv
-> QuantizeLinear into an integer kernel. Wider students and the teacher are deployed as fp32.
Bit-widths below 8 are stored as int8 in the ONNX file: ONNX Runtime has no sub-byte kernels,
so they bring no speed or file-size gain there (only the packed size counts them).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def export_fp32(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export `model` (eval mode, CPU) to ONNX with a dynamic batch axis. BatchNorm is folded
    into the convolutions by the exporter's constant folding."""
    model = model.cpu().eval()
    with warnings.catch_warnings():
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
    fp32_path: Path, calibration: np.ndarray, path: Path, reduce_range: bool = False
) -> Path:
    """Static int8 QDQ quantization of `fp32_path`, calibrated (min-max) on `calibration`
    images (N, C, H, W float32). `reduce_range` uses 7-bit weights, which avoids the u8s8
    saturation of AVX2/AVX-512 kernels without VNNI."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            _Calibration(calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    return path


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
            path = quantize_int8(path, calibration, Path(tmp) / "int8.onnx")
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
