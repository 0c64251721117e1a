"""Stages of a timm CNN, read from its `feature_info`, with the blocks each stage may drop.

A stage is the span of the network that ends at one `feature_info` entry. Its
blocks are the children of the block sequences in that span (``layer2`` in a
ResNet; ``blocks.2`` and ``blocks.3`` in a MobileNetV3, whose feature_info skips
``blocks.2``; ``stages.1.blocks`` in a ConvNeXt). Entries without blocks (a ResNet
stem's ``act1``) are merged into the next stage. A block can be dropped when its
output has the shape of its input, so the network still composes without it;
depth is cut from the end of each stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Block:
    seq_path: str  # dotted path of the nn.Sequential that holds the block
    index: int  # position in that sequence
    removable: bool


@dataclass(frozen=True)
class Stage:
    """One stage: the module paths it owns, its blocks, its output channels and reduction."""

    index: int
    name: str
    module_paths: tuple[str, ...]
    blocks: tuple[Block, ...]
    channels: int
    reduction: int

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def min_blocks(self) -> int:
        return sum(not b.removable for b in self.blocks)

    def blocks_to_drop(self, keep: int) -> list[Block]:
        """The removable blocks to drop so that `keep` blocks remain, taken from the end."""
        if not self.min_blocks <= keep <= self.num_blocks:
            raise ValueError(
                f"stage {self.name}: blocks must lie in [{self.min_blocks}, {self.num_blocks}], "
                f"got {keep}"
            )
        removable = [b for b in self.blocks if b.removable]
        drop = self.num_blocks - keep
        return removable[len(removable) - drop :] if drop else []


def find_stages(model: nn.Module, example_input: torch.Tensor) -> list[Stage]:
    """Stages of `model` (a timm model with `feature_info`), probed with one forward pass."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} has no feature_info; it is not a timm CNN")
    entries = [(e["module"], int(e["num_chs"]), int(e["reduction"])) for e in info]
    spans = _spans(model, [path for path, _, _ in entries])
    removable = _removable_blocks(model, example_input)
    stages: list[Stage] = []
    carried: tuple[str, ...] = ()
    for (path, channels, reduction), span in zip(entries, spans, strict=True):
        blocks = tuple(
            Block(seq, i, removable.get((seq, i), False))
            for seq in (_block_sequence(model, p) for p in span)
            if seq is not None
            for i in range(len(model.get_submodule(seq)))
        )
        if not blocks:  # a stem entry: its modules join the next stage
            carried += span
            continue
        stages.append(Stage(len(stages), path, carried + span, blocks, channels, reduction))
        carried = ()
    if not stages:
        raise ValueError(f"{type(model).__name__}: no stage with blocks found in feature_info")
    return stages


def _spans(model: nn.Module, paths: list[str]) -> list[tuple[str, ...]]:
    """For each feature_info path, the sibling modules since the previous entry, itself included."""
    spans: list[tuple[str, ...]] = []
    previous: dict[str, int] = {}
    for path in paths:
        parent, _, leaf = path.rpartition(".")
        if leaf.isdigit():
            start = previous.get(parent, -1) + 1
            spans.append(tuple(f"{parent}.{i}" for i in range(start, int(leaf) + 1)))
            previous[parent] = int(leaf)
        else:
            spans.append((path,))
    return spans


def _block_sequence(model: nn.Module, path: str) -> str | None:
    module = model.get_submodule(path)
    if isinstance(module, nn.Sequential) and len(module) > 0:
        return path
    inner = getattr(module, "blocks", None)
    if isinstance(inner, nn.Sequential) and len(inner) > 0:
        return f"{path}.blocks"
    return None


def _removable_blocks(model: nn.Module, example_input: torch.Tensor) -> dict[tuple[str, int], bool]:
    """(sequence path, index) -> whether that block maps a tensor to one of the same shape."""
    found: dict[tuple[str, int], bool] = {}
    handles = []
    for seq_path, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i, block in enumerate(seq):

            def hook(_m, args, out, key=(seq_path, i)):
                same = isinstance(out, torch.Tensor) and tuple(args[0].shape) == tuple(out.shape)
                found[key] = found.get(key, True) and same

            handles.append(block.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    # The first block of a sequence stays: it usually carries the stage's stride or width change.
    return {key: same and key[1] > 0 for key, same in found.items()}


def drop_blocks(model: nn.Module, blocks: list[Block]) -> None:
    """Remove `blocks` from `model` in place by rebuilding their sequences without them."""
    by_seq: dict[str, set[int]] = {}
    for b in blocks:
        by_seq.setdefault(b.seq_path, set()).add(b.index)
    for seq_path, indices in by_seq.items():
        seq = model.get_submodule(seq_path)
        kept = nn.Sequential(*[m for i, m in enumerate(seq) if i not in indices])
        parent_path, _, name = seq_path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, kept)


def stage_membership(model: nn.Module, stages: list[Stage]) -> dict[str, int | None]:
    """Map every named module to the stage whose module paths contain it, or None."""
    member: dict[str, int | None] = {}
    for name, _ in model.named_modules():
        if name:
            member[name] = next(
                (
                    s.index
                    for s in stages
                    if any(name == p or name.startswith(p + ".") for p in s.module_paths)
                ),
                None,
            )
    return member


def stage_of_modules(model: nn.Module, stages: list[Stage]) -> dict[str, int]:
    """Map every named module to a stage: its own, else the nearest one by forward position
    (modules before the first stage to stage 0, those after the last to the last)."""
    owner: dict[str, int] = {}
    current = 0
    for name, stage in stage_membership(model, stages).items():
        if stage is not None:
            current = stage
        owner[name] = current
    return owner
