"""The packed student file's own encoding: integers at any width, positions, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from automl.compress.sparsity import SparsityParams
from automl.stages import find_stages
from automl.student.packed import (
    _decode,
    _encode,
    _pack_uints,
    _unpack_uints,
    pack_student,
    read_packed,
)
from search_spaces import Architecture


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 7, 8, 11, 16, 31])
def test_unsigned_integers_of_any_width_come_back(bits):
    values = np.random.default_rng(bits).integers(0, 2**bits, 1001)
    raw = _pack_uints(values, bits)
    assert len(raw) == (1001 * bits + 7) // 8
    np.testing.assert_array_equal(_unpack_uints(raw, 1001, bits), values)


@pytest.mark.parametrize("bits", [4, 8, 32])
@pytest.mark.parametrize("zeros", [0.0, 0.3, 0.97])  # dense, a bitmap, an index list
def test_a_tensor_comes_back_at_its_bits_with_its_zeros(bits, zeros):
    torch.manual_seed(0)
    weight = torch.randn(16, 8, 3, 3)
    weight[torch.rand_like(weight) < zeros] = 0
    if bits < 32:  # a weight quantized per output channel, as weight_quant leaves it
        qmax = 2 ** (bits - 1) - 1
        scale = weight.reshape(16, -1).abs().amax(1).view(16, 1, 1, 1) / qmax
        weight = torch.round(weight / scale) * scale
    stored = int(torch.count_nonzero(weight)) if zeros else None
    raw = _encode(weight, bits, stored)
    back, end = _decode(raw, 0, tuple(weight.shape), bits, stored)
    assert end == len(raw)
    torch.testing.assert_close(back, weight, atol=1e-6, rtol=1e-6)
    assert (back == 0).sum() == (weight == 0).sum()


def test_a_damaged_file_is_refused():
    with pytest.raises(ValueError, match="wrong magic number"):
        read_packed(b"PK\x03\x04 a zip file")
    model = timm.create_model("resnet18", in_chans=1, num_classes=10).eval()
    stages = find_stages(model, torch.zeros(1, 1, 16, 16))
    arch = Architecture.compose({"sparsity": SparsityParams(sparsity=[0.5] * len(stages))})
    data = pack_student(model, stages, arch)
    assert read_packed(data)[1] == arch
    with pytest.raises(ValueError, match="cut short"):
        read_packed(data[:-100])
    with pytest.raises(ValueError, match="bytes beyond the last tensor"):
        read_packed(data + b"\0")
