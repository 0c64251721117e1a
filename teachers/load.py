"""Create a timm teacher by name and load weights from local files, with clear errors."""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from automl.errors import UserError
from automl.paths import not_a_file


def create_teacher(
    name: str, in_chans: int, num_classes: int, pretrained: bool = False, small_input: bool = False
) -> nn.Module:
    """A timm model shaped for the data, its stem made for small images when `small_input`
    (see `drop_stem_downsampling`); unknown names get the closest known ones."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(
            f"teacher.model: unknown timm model {name!r}{hint} (see timm.list_models())"
        )
    try:
        model = timm.create_model(
            name, pretrained=pretrained, in_chans=in_chans, num_classes=num_classes
        )
    except (OSError, RuntimeError) as exc:
        if pretrained:
            raise UserError(
                f"teacher.pretrained: could not load hub weights for {name!r} ({exc}); "
                "without network access, set teacher.checkpoint to a local file instead"
            ) from None
        raise
    if not getattr(model, "feature_info", None):
        raise UserError(f"teacher.model: {name!r} has no feature_info; choose a timm CNN")
    if small_input:
        drop_stem_downsampling(model, name)
    return model


def drop_stem_downsampling(model: nn.Module, name: str) -> None:
    """Remove the first 2x downsampling of `model`'s stem, in place: a top-level max-pool
    (ResNets) becomes an identity, else the first strided convolution gets stride 1.

    ImageNet stems shrink their input 4x before the first stage: a 28 px image reaches a
    ResNet's last stage as 1x1. Parameters are unchanged, so weights load either way.
    """
    pool = getattr(model, "maxpool", None)
    if isinstance(pool, nn.MaxPool2d | nn.AvgPool2d):
        model.maxpool = nn.Identity()
        return
    strided = (m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1))
    conv = next(strided, None)
    if conv is None or conv.stride != (2, 2):
        found = "no strided convolution" if conv is None else f"a first stride of {conv.stride}"
        raise UserError(
            f"teacher.small_input: {name!r} has {found}; it works for stems that downsample "
            "by 2 with a max-pool (ResNets) or a stride-2 convolution (MobileNets, EfficientNets)"
        )
    conv.stride = (1, 1)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read weights from .safetensors, or a torch file holding a state dict (weights_only)."""
    problem = not_a_file(path)
    if problem is not None:
        raise UserError(f"teacher.checkpoint: {problem}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise UserError(f"teacher.checkpoint: cannot read {path}: {exc}") from None
    except Exception as exc:  # unpickling errors carry many types
        raise UserError(
            f"teacher.checkpoint: {path} is not a weights-only state dict ({type(exc).__name__}: "
            f"{exc}); save it with torch.save(model.state_dict(), path) or as .safetensors"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"teacher.checkpoint: {path} does not hold a state dict of tensors")
    return state


def classifier_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of a timm model's classifier (its `pretrained_cfg['classifier']`)."""
    heads = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    heads = [heads] if isinstance(heads, str) else list(heads)
    return [k for k in model.state_dict() if any(k.startswith(f"{h}.") for h in heads)]


def load_weights(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    replace_classifier: bool = False,
) -> list[str]:
    """Load `state` strictly; a mismatch names the first missing, unexpected or mis-shaped keys.

    With `replace_classifier`, classifier weights shaped for another class count are left at
    the model's fresh initialisation; returns the keys so replaced.
    """
    own = model.state_dict()
    replaced = [
        k
        for k in (classifier_keys(model) if replace_classifier else [])
        if k in state and state[k].shape != own[k].shape
    ]
    state = {
        **{k: v for k, v in state.items() if k not in replaced},
        **{k: own[k] for k in replaced},
    }
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shaped:
        parts = [
            f"{label} ({len(items)}): {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape", shaped),
            )
            if items
        ]
        raise UserError(f"{source} does not fit this model: " + "; ".join(parts))
    model.load_state_dict(state)
    return replaced
