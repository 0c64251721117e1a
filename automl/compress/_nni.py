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

NNI's Taylor pruner (`nni_taylor`) scores from gradients that it collects during its own
training loop, driven through NNI's `TorchEvaluator`: here TAYLOR_STEPS steps of
cross-entropy on the calibration batch, cut into as many mini-batches, with a learning rate of
0, so the copy's weights never move and the scores are those of the model as it is. Its
`compress` clears what it collected once masks are made, so the metric is taken as
`_calculate_metrics` returns it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

# criterion name -> NNI 3.0 pruner class in nni.compression.pruning, each scoring a
# convolution's output channels from its weights alone (no training loop, no evaluator)
PRUNERS = {
    "nni_l1": "L1NormPruner",  # Li et al. 2017: the L1 norm of each filter
    "nni_l2": "L2NormPruner",
    "nni_fpgm": "FPGMPruner",  # He et al. 2019: summed distance to the layer's other filters
    # Molchanov et al. 2019: per filter, the L1 norm of the mean squared (w x dL/dw) over
    # steps of NNI's own training loop (`taylor_scores`)
    "nni_taylor": "TaylorPruner",
}
TRAINED = {"TaylorPruner"}  # pruners that score during a training loop, through an evaluator
TAYLOR_STEPS = 4
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
    pruner: str,
    model: nn.Module,
    modules: Mapping[nn.Module, float],
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[nn.Module, torch.Tensor]:
    """Per output channel of each Conv2d among `modules`: the score NNI's `pruner` (a class
    name in nni.compression.pruning) gives it, higher meaning more important. A pruner in
    TRAINED needs `batch`, labelled images (`taylor_metrics`)."""
    names = {m: n for n, m in model.named_modules()}
    convs = [m for m in modules if isinstance(m, nn.Conv2d) and m in names]
    if not convs:
        return {}
    twin = copy.deepcopy(model)
    # the ratio only sets NNI's masks, which are not used: every channel keeps its metric
    config = [{"op_names": [names[m] for m in convs], "sparse_ratio": 0.5}]
    if pruner in TRAINED:
        if batch is None:
            raise ValueError(f"NNI's {pruner} scores from gradients: it needs a labelled batch")
        metrics = taylor_metrics(twin, config, batch)
    else:
        nni = getattr(nni_pruning(), pruner)(twin, config)
        metrics = nni._calculate_metrics(nni._collect_data())
    by_name = {names[m]: m for m in convs}
    return {
        by_name[name]: targets["weight"].detach().flatten().float().cpu()
        for name, targets in metrics.items()
        if name in by_name
    }


def taylor_metrics(
    model: nn.Module, config: list[dict], batch: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, dict[str, torch.Tensor]]:
    """NNI's TaylorPruner's metrics of `model` (which NNI wraps: pass a copy), collected over
    TAYLOR_STEPS steps of its training loop on `batch` cut into as many mini-batches, at a
    learning rate of 0 (the module docstring)."""
    import nni
    from nni.compression import TorchEvaluator

    inputs, labels = batch
    chunks = list(zip(inputs.chunk(TAYLOR_STEPS), labels.chunk(TAYLOR_STEPS), strict=True))

    def training_step(batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def training_func(
        model: nn.Module,
        optimizers: torch.optim.Optimizer,
        training_step: Callable[..., torch.Tensor],
        lr_schedulers: object = None,
        max_steps: int | None = None,
        max_epochs: int | None = None,
    ) -> None:
        model.train()
        for step in range(max_steps or len(chunks)):
            optimizers.zero_grad()
            training_step(chunks[step % len(chunks)], model).backward()
            optimizers.step()

    optimizer = nni.trace(torch.optim.SGD)(model.parameters(), lr=0.0)
    evaluator = TorchEvaluator(training_func, optimizer, training_step)
    pruner = nni_pruning().TaylorPruner(model, config, evaluator, training_steps=len(chunks))
    found: dict[str, dict[str, torch.Tensor]] = {}
    calculate = pruner._calculate_metrics

    def keep(data: dict) -> dict:
        found.update(calculate(data))
        return found

    pruner._calculate_metrics = keep
    pruner.compress()
    if not found:
        raise RuntimeError("NNI's TaylorPruner made no metrics")
    return found
