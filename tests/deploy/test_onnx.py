"""ONNX export and ONNX Runtime sessions: a dynamic batch axis, BatchNorm folded, static int8
with QDQ nodes, the thread count a session is given."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from automl.deploy.onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_fp32,
    ort_accuracy,
    ort_logits,
    quantize_int8,
    session,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()


def test_export_has_a_dynamic_batch_and_folds_batchnorm(tmp_path):
    model, x = _net(), torch.randn(5, 1, 8, 8)
    path = export_fp32(model, x[:1], tmp_path / "m.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == [INPUT_NAME] and graph.output[0].name == OUTPUT_NAME
    assert "BatchNormalization" not in {n.op_type for n in graph.node}
    with torch.no_grad():
        np.testing.assert_allclose(
            ort_logits(session(path), x.numpy()), model(x).numpy(), atol=1e-5
        )


def test_int8_quantization_and_accuracy(tmp_path):
    model, x = _net(), torch.randn(64, 1, 8, 8)
    fp32 = export_fp32(model, x[:1], tmp_path / "m.onnx")
    int8 = tmp_path / "q.onnx"
    assert quantize_int8(fp32, x.numpy(), int8) == 0  # no model: every tensor calibrated
    assert {"QuantizeLinear", "DequantizeLinear"} <= {
        n.op_type for n in onnx.load(str(int8)).graph.node
    }
    with torch.no_grad():  # the PyTorch model's classes: what both ONNX forms must give
        labels = model(x).argmax(1).numpy()
    assert ort_accuracy(session(fp32), x.numpy(), labels) == 1.0
    assert ort_accuracy(session(int8), x.numpy(), labels) > 0.8
    classes = ort_logits(session(fp32), x.numpy()).shape[1]
    assert ort_accuracy(session(fp32), x.numpy(), (labels + 1) % classes) == 0.0  # it counts
    options = session(int8, threads=2).get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
