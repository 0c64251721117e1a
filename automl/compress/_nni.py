"""NNI's pruners as channel criteria: NNI computes the scores, torch-pruning removes channels.

NNI 3.0 (its last release, `pip install '.[nni]'`) scores output channels with its pruners
but cannot remove them here: its `ModelSpeedup` fails in its tracer with current torch. So a
`prepare` step runs an NNI pruner's own metric on a copy of the model (NNI wraps the modules it
prunes, replacing their parameters; the model being pruned is never touched) and leaves each
convolution's per-output-channel score under SCORE, where `ScoreImportance` reads it.

The metric is read through the pruner's `_collect_data` and `_calculate_metrics`, the two steps
its `compress` runs before turning metrics into masks: masks are the metric thresholded at one
sparsity, and a criterion must rank channels for every stage's own ratio. They are private
names of NNI 3.0, the release the extra pins.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from collections.abc import Mapping
from types import ModuleType

import torch
from torch import nn

# criterion name -> NNI 3.0 pruner class in nni.compression.pruning, each scoring a
# convolution's output channels from its weights alone (no training loop, no evaluator)
PRUNERS = {
    "nni_l1": "L1NormPruner",  # Li et al. 2017: the L1 norm of each filter
    "nni_l2": "L2NormPruner",
    "nni_fpgm": "FPGMPruner",  # He et al. 2019: summed distance to the layer's other filters
}
INSTALL = "pip install '.[nni]' (nni 3.0)"


def nni_pruning() -> ModuleType:
    """`nni.compression.pruning`, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("nni.compression.pruning")
    except ImportError as e:
        raise ImportError(f"the nni_* criteria need NNI, an optional extra: {INSTALL}") from e


def nni_installed() -> bool:
    """Whether NNI is installed, without importing it (that takes seconds)."""
    return importlib.util.find_spec("nni") is not None


def channel_scores(
    pruner: str, model: nn.Module, modules: Mapping[nn.Module, float]
) -> dict[nn.Module, torch.Tensor]:
    """Per output channel of each Conv2d among `modules`: the score NNI's `pruner` (a class
    name in nni.compression.pruning) gives it, higher meaning more important."""
    names = {m: n for n, m in model.named_modules()}
    convs = [m for m in modules if isinstance(m, nn.Conv2d) and m in names]
    if not convs:
        return {}
    twin = copy.deepcopy(model)
    # the ratio only sets NNI's masks, which are not used: every channel keeps its metric
    config = [{"op_names": [names[m] for m in convs], "sparse_ratio": 0.5}]
    nni = getattr(nni_pruning(), pruner)(twin, config)
    metrics = nni._calculate_metrics(nni._collect_data())
    by_name = {names[m]: m for m in convs}
    return {
        by_name[name]: targets["weight"].detach().flatten().float().cpu()
        for name, targets in metrics.items()
        if name in by_name
    }
