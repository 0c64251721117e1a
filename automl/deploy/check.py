"""A student in its deployed form: an ONNX file that checks itself against PyTorch."""

from __future__ import annotations

import math
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
from automl.training import predict_split

# The deployed form may lose at most this much test accuracy against PyTorch (0.5 point) ...
MAX_ACCURACY_GAP = 0.005
# ... as judged by a one-sided 95% confidence bound (normal approximation) on the loss, so
# that a few images of a small test set cannot reject a good model.
Z_ONE_SIDED_95 = 1.645
CALIBRATION_IMAGES = 256


class ExportCheckFailed(RuntimeError):
    """The deployed model does not score like the PyTorch model it came from."""


@dataclass(frozen=True)
class Parity:
    """The deployed form's test predictions against PyTorch's, image by image (paired).

    `drop` is PyTorch's accuracy minus the deployed form's, in [-1, 1]; `drop_low` a
    one-sided 95% lower confidence bound on it from the paired differences (McNemar's
    discordant pairs: `lost` images only PyTorch gets right, `won` only the deployed form).
    """

    images: int
    disagree: int  # images whose predicted class differs
    lost: int
    won: int

    @property
    def drop(self) -> float:
        return (self.lost - self.won) / self.images

    @property
    def drop_low(self) -> float:
        spread = (self.lost + self.won) / self.images - self.drop**2
        return self.drop - Z_ONE_SIDED_95 * math.sqrt(max(spread, 0.0) / self.images)

    @property
    def passes(self) -> bool:
        """The form is at least as accurate, or it loses no more than MAX_ACCURACY_GAP
        beyond what the test set's size leaves uncertain."""
        return self.drop <= 0 or self.drop_low <= MAX_ACCURACY_GAP

    def describe(self) -> str:
        return (
            f"{-100 * self.drop:+.2f} points against PyTorch ({self.lost} images lost, "
            f"{self.won} won of {self.images}; at least {100 * self.drop_low:.2f} points lost "
            "with 95% confidence)"
        )


def parity(torch_pred: np.ndarray, onnx_pred: np.ndarray, labels: np.ndarray) -> Parity:
    torch_right, onnx_right = torch_pred == labels, onnx_pred == labels
    return Parity(
        images=len(labels),
        disagree=int((torch_pred != onnx_pred).sum()),
        lost=int((torch_right & ~onnx_right).sum()),
        won=int((onnx_right & ~torch_right).sum()),
    )


@dataclass
class DeployedOnnx:
    path: Path
    format: str  # "int8" (QDQ, static) or "fp32"
    onnx_bytes: int
    torch_test_accuracy: float
    onnx_test_accuracy: float
    reduce_range: bool  # int8 only: 7-bit weights were needed to pass the check
    fp32_onnx_bytes: int
    disagree: int | None = None  # test images whose predicted class differs from PyTorch's
    fallback: str | None = None  # why an int8 model ships as fp32 ONNX
    trained_tensors: int = 0  # int8: tensors quantized at trained ranges or scales, not calibrated

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["path"] = self.path.name
        return doc


def calibration_images(data: DataBundle, seed: int, n: int = CALIBRATION_IMAGES) -> np.ndarray:
    """A seeded random sample of training images for int8 calibration (never val or test)."""
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train), generator=generator)[:n]
    return data.train.images(idx).numpy()


def split_predictions(
    sess: ort.InferenceSession, split: Images, batch_size: int = 256
) -> np.ndarray:
    """ONNX Runtime's predicted class for every image of `split`, batch by batch."""
    order = torch.arange(len(split))
    return np.concatenate(
        [ort_logits(sess, x.numpy()).argmax(1) for _, x in split.batches(order, batch_size)]
    )


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
    at most 8 bits, fp32 otherwise; `student.build.deploy_form` gives it), checked against
    PyTorch on every test image (`Parity.passes`).

    An int8 model that fails the check is quantized once more with reduce_range (7-bit
    weights); when that fails too, it ships as fp32 ONNX, and `fallback` says why. Raises
    ExportCheckFailed when the fp32 form fails as well, leaving nothing at `path`. With
    `keep_fp32`, the fp32 export of an int8 model is kept there for comparison.
    """
    fmt = onnx_format(form)
    labels = data.test.y.numpy()
    torch_pred = predict_split(model.cpu().eval(), data.test, torch.device("cpu")).argmax(1)
    torch_pred = torch_pred.numpy()
    torch_acc = float((torch_pred == labels).mean())
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(model, data.example_input(1), Path(tmp) / "fp32.onnx")
        fp32_bytes = fp32.stat().st_size
        attempts = [("int8", False), ("int8", True)] if fmt == "int8" else []
        tried: list[str] = []
        trained = 0
        for shipped, reduce_range in [*attempts, ("fp32", False)]:
            candidate = fp32
            if shipped == "int8":
                candidate = Path(tmp) / f"int8_rr{int(reduce_range)}.onnx"
                trained = quantize_int8(
                    fp32, calibration_images(data, seed), candidate, reduce_range, model
                )
            onnx_pred = split_predictions(session(candidate, threads), data.test)
            check = parity(torch_pred, onnx_pred, labels)
            label = shipped + (" with reduce_range" if reduce_range else "")
            if check.passes:
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(candidate, path)
                if keep_fp32 is not None and fmt == "int8" and shipped == "int8":
                    shutil.move(fp32, keep_fp32)
                fallback = None
                if shipped != fmt:
                    fallback = f"int8 failed its check ({'; '.join(tried)}), so it ships as fp32"
                return DeployedOnnx(
                    path,
                    shipped,
                    path.stat().st_size,
                    torch_acc,
                    float((onnx_pred == labels).mean()),
                    reduce_range,
                    fp32_bytes,
                    disagree=check.disagree,
                    fallback=fallback,
                    trained_tensors=trained if shipped == "int8" else 0,
                )
            tried.append(f"{label}: {check.describe()}")
    raise ExportCheckFailed(
        f"no ONNX form scores like the PyTorch model ({'; '.join(tried)}); more than "
        f"{100 * MAX_ACCURACY_GAP:.1f} point lost, so it is not exported"
    )
