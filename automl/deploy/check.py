"""A student in its deployed form: an ONNX file that checks itself against PyTorch."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from automl.compress import DeployForm, onnx_format
from automl.data import DataBundle
from automl.data.bundle import Images
from automl.deploy.onnx import export_fp32, ort_logits, quantize_int8, session
from automl.training import accuracy

# ONNX Runtime's test accuracy may differ from PyTorch's by at most this much (0.5 point).
MAX_ACCURACY_GAP = 0.005
CALIBRATION_IMAGES = 256


class ExportCheckFailed(RuntimeError):
    """The deployed model does not score like the PyTorch model it came from."""


@dataclass
class DeployedOnnx:
    path: Path
    format: str  # "int8" (QDQ, static) or "fp32"
    onnx_bytes: int
    torch_test_accuracy: float
    onnx_test_accuracy: float
    reduce_range: bool  # int8 only: 7-bit weights were needed to pass the check
    fp32_onnx_bytes: int

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["path"] = self.path.name
        return doc


def calibration_images(data: DataBundle, seed: int, n: int = CALIBRATION_IMAGES) -> np.ndarray:
    """A seeded random sample of training images for int8 calibration (never val or test)."""
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train), generator=generator)[:n]
    return data.train.images(idx).numpy()


def split_accuracy(sess: ort.InferenceSession, split: Images, batch_size: int = 256) -> float:
    """ONNX Runtime's accuracy on every image of `split`, batch by batch."""
    order = torch.arange(len(split))
    right = sum(
        int((ort_logits(sess, x.numpy()).argmax(1) == split.y[idx].numpy()).sum())
        for idx, x in split.batches(order, batch_size)
    )
    return right / len(split)


def deploy_onnx(
    model: nn.Module,
    form: DeployForm,
    data: DataBundle,
    path: Path,
    seed: int = 0,
    threads: int = 1,
    keep_fp32: Path | None = None,
) -> DeployedOnnx:
    """Write `model` to `path` as ONNX in its `form` (`onnx_format`: int8 when every weight is
    at most 8 bits, fp32 otherwise; `student.build.deploy_form` gives it), and check that ONNX
    Runtime's test accuracy is within MAX_ACCURACY_GAP of PyTorch's.

    An int8 model that misses the gap is quantized once more with reduce_range (7-bit weights)
    before the export gives up. Raises ExportCheckFailed, leaving nothing at `path`.
    With `keep_fp32`, the fp32 export of an int8 model is kept there for comparison.
    """
    fmt = onnx_format(form)
    torch_acc = accuracy(model.cpu().eval(), data.test, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(model, data.example_input(1), Path(tmp) / "fp32.onnx")
        fp32_bytes = fp32.stat().st_size
        attempts = [False, True] if fmt == "int8" else [False]
        tried = []
        for reduce_range in attempts:
            candidate = fp32
            if fmt == "int8":
                candidate = Path(tmp) / f"int8_rr{int(reduce_range)}.onnx"
                quantize_int8(fp32, calibration_images(data, seed), candidate, reduce_range)
            onnx_acc = split_accuracy(session(candidate, threads), data.test)
            tried.append(f"{onnx_acc:.4f}" + (" (reduce_range)" if reduce_range else ""))
            if abs(onnx_acc - torch_acc) <= MAX_ACCURACY_GAP:
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(candidate, path)
                if keep_fp32 is not None and fmt == "int8":
                    shutil.move(fp32, keep_fp32)
                return DeployedOnnx(
                    path,
                    fmt,
                    path.stat().st_size,
                    torch_acc,
                    onnx_acc,
                    reduce_range and fmt == "int8",
                    fp32_bytes,
                )
    raise ExportCheckFailed(
        f"the {fmt} ONNX model scores {', '.join(tried)} test accuracy in ONNX Runtime against "
        f"{torch_acc:.4f} in PyTorch; more than {100 * MAX_ACCURACY_GAP:.1f} point apart, so "
        "it is not exported"
    )
