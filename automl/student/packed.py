"""The packed student file: every tensor stored as its techniques account for it, so the file is
the packed size the search reports, not a figure beside a larger file.

Each tensor takes the form its `TensorCost` names (`automl.compress.TensorCost`): dense fp32;
symmetric integer codes of `bits` bits with one fp32 scale per output channel; and, when only
its non-zeros are kept, their positions as a bitmap or an index list, whichever is smaller.
The file is

    MAGIC, header length (uint32, little-endian), zlib-compressed JSON header, body

where the header holds the architecture, free metadata and one entry per tensor (name, shape,
bits, stored values) and the body each tensor's scales, positions and values, each segment
padded to a whole byte. The header and the padding are the only bytes beyond the packed size.
`read_packed` rebuilds the dense fp32 state dict (codes times scales, zeros where nothing was
stored); `load_packed_student` rebuilds the model from it.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automl.compress import Student, techniques_in_order
from automl.compress._base import TensorCost, index_bits
from automl.compress.weight_quant import code_scales
from automl.files import write_file
from automl.stages import Stage
from automl.student.build import tensor_costs
from automl.student.files import fill_state, skeleton
from search_spaces import Architecture

MAGIC = b"AMCPACK1"
FULL = 32


def tensor_plan(model: nn.Module, stages: list[Stage], arch: Architecture) -> dict[str, TensorCost]:
    """How every tensor of a deployed (folded) student is stored: its techniques' accounts."""
    costs = tensor_costs(model)
    student = Student(model, stages)
    for technique in techniques_in_order(arch.techniques):
        technique.account(student, arch.params(technique.name), costs)
    return costs


def pack_student(
    model: nn.Module, stages: list[Stage], arch: Architecture, meta: dict[str, Any] | None = None
) -> bytes:
    """The packed file of a deployed (folded) student, as bytes."""
    plan = tensor_plan(model, stages, arch)
    entries, body = [], bytearray()
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue  # batch norm's step counter: not needed to run the model
        cost = plan.get(name, TensorCost(values=tensor.numel()))
        weights = tensor.detach().cpu().float()
        stored = cost.values if cost.values < weights.numel() else None
        entries.append([name, list(weights.shape), cost.bits, stored])
        body += _encode(weights, cost.bits, stored)
    header = zlib.compress(
        json.dumps(
            {"architecture": arch.model_dump(mode="json"), "meta": meta or {}, "tensors": entries},
            separators=(",", ":"),
        ).encode(),
        level=9,
    )
    return MAGIC + struct.pack("<I", len(header)) + header + bytes(body)


def read_packed(data: bytes) -> tuple[dict[str, torch.Tensor], Architecture, dict[str, Any]]:
    """The dense fp32 state dict, the architecture and the metadata of a packed file. Raises
    ValueError when `data` is no packed file or is cut short."""
    if data[: len(MAGIC)] != MAGIC:
        raise ValueError("not a packed student file (wrong magic number)")
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(zlib.decompress(data[start : start + length]))
    offset = start + length
    state: dict[str, torch.Tensor] = {}
    for name, shape, bits, stored in header["tensors"]:
        tensor, offset = _decode(data, offset, tuple(shape), bits, stored)
        state[name] = tensor
    if offset != len(data):
        raise ValueError(f"{len(data) - offset} bytes beyond the last tensor")
    return state, Architecture.model_validate(header["architecture"]), header["meta"]


def _encode(weights: torch.Tensor, bits: int, stored: int | None) -> bytes:
    flat = weights.flatten()
    out = bytearray()
    if bits < FULL:
        scales = _scales(weights, bits)
        out += scales.numpy().astype("<f4").tobytes()
    if stored is not None:
        positions = torch.nonzero(flat).flatten()
        if len(positions) != stored:
            raise ValueError(f"{len(positions)} non-zeros where the account says {stored}")
        if flat.numel() <= stored * index_bits(flat.numel()):
            out += np.packbits((flat != 0).numpy(), bitorder="little").tobytes()
        else:
            out += _pack_uints(positions.numpy(), index_bits(flat.numel()))
        values, rows = flat[positions], positions // _row_size(weights)
    else:
        values, rows = flat, torch.arange(flat.numel()) // _row_size(weights)
    if bits < FULL:
        qmax = 2 ** (bits - 1) - 1
        scale = scales[rows]
        codes = torch.where(scale > 0, torch.round(values / scale.clamp_min(1e-30)), 0.0)
        out += _pack_uints((codes.clamp(-qmax, qmax) + qmax).long().numpy(), bits)
    else:
        out += values.numpy().astype("<f4").tobytes()
    return bytes(out)


def _decode(
    data: bytes, offset: int, shape: tuple[int, ...], bits: int, stored: int | None
) -> tuple[torch.Tensor, int]:
    numel = int(np.prod(shape)) if shape else 1
    rows = shape[0] if shape else 1
    row_size = numel // rows if rows else 1
    scales = None
    if bits < FULL:
        scales, offset = _take_floats(data, offset, rows)
    if stored is not None:
        if numel <= stored * index_bits(numel):
            raw, offset = _take(data, offset, (numel + 7) // 8)
            bitmap = np.unpackbits(np.frombuffer(raw, np.uint8), count=numel, bitorder="little")
            positions = np.flatnonzero(bitmap)
        else:
            size = (stored * index_bits(numel) + 7) // 8
            raw, offset = _take(data, offset, size)
            positions = _unpack_uints(raw, stored, index_bits(numel))
        count = stored
    else:
        positions, count = np.arange(numel), numel
    if len(positions) != count or (count and positions.max() >= numel):
        raise ValueError("corrupt positions of a sparse tensor")
    if scales is not None:
        qmax = 2 ** (bits - 1) - 1
        raw, offset = _take(data, offset, (count * bits + 7) // 8)
        codes = _unpack_uints(raw, count, bits).astype(np.int64) - qmax
        values = codes * scales[positions // row_size]
    else:
        values, offset = _take_floats(data, offset, count)
    dense = np.zeros(numel, np.float32)
    dense[positions] = values
    return torch.from_numpy(dense.reshape(shape)), offset


def _scales(weights: torch.Tensor, bits: int) -> torch.Tensor:
    """One scale per output channel: for a weight fake-quantized at `bits` (`weight_quant`), one
    at which its values are integer codes (`code_scales`: min-max scales, and learned ones whose
    largest code is below the maximum), so its codes come back exactly; else max |w| /
    (2**(bits-1) - 1)."""
    rows = weights.reshape(weights.shape[0], -1) if weights.dim() else weights.reshape(1, 1)
    fitted = code_scales(rows.numpy(), bits)
    if fitted is not None:
        return torch.from_numpy(fitted).float()
    return rows.abs().amax(dim=1) / (2 ** (bits - 1) - 1)


def _row_size(weights: torch.Tensor) -> int:
    return max(1, weights.numel() // weights.shape[0]) if weights.dim() else 1


def _pack_uints(values: np.ndarray, bits: int) -> bytes:
    """Unsigned integers, `bits` bits each, least significant bit first, into whole bytes."""
    values = values.astype(np.uint64)
    planes = (values[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes()


def _unpack_uints(raw: bytes, count: int, bits: int) -> np.ndarray:
    planes = np.unpackbits(np.frombuffer(raw, np.uint8), count=count * bits, bitorder="little")
    weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
    return (planes.reshape(count, bits).astype(np.uint64) * weights).sum(axis=1)


def _take(data: bytes, offset: int, size: int) -> tuple[bytes, int]:
    if offset + size > len(data):
        raise ValueError("the file is cut short")
    return data[offset : offset + size], offset + size


def _take_floats(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    raw, offset = _take(data, offset, 4 * count)
    return np.frombuffer(raw, "<f4").astype(np.float32), offset


def write_packed(
    path: Path, model: nn.Module, stages: list[Stage], arch: Architecture, meta: dict[str, Any]
) -> int:
    """Write the packed file of a deployed student to `path`; returns its size in bytes."""
    data = pack_student(model, stages, arch, meta)
    write_file(path, data)
    return len(data)


def load_packed_student(
    path: Path,
    teacher_name: str,
    in_chans: int,
    num_classes: int,
    image_size: tuple[int, int],
    small_input: bool = False,
) -> tuple[nn.Module, Architecture]:
    """Rebuild the dense student of a packed file (as `load_student` does for safetensors);
    eval mode, CPU."""
    state, arch, _ = read_packed(path.read_bytes())
    model, _ = skeleton(arch, teacher_name, in_chans, num_classes, image_size, small_input)
    fill_state(model, state)
    return model.eval(), arch
