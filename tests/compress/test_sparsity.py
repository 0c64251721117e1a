"""Unstructured magnitude pruning: exact counts, local against global, masks that hold through
distillation, with channel pruning and quantization in one student, and an honest size."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch.nn.utils import parametrize

from automl.compress._base import index_bits, position_bits
from automl.compress.channels import ChannelsParams
from automl.compress.sparsity import (
    RAMP_END,
    UPDATES,
    MaskSchedule,
    SparsityParams,
    WeightMask,
    lamp_scores,
    magnitude_masks,
    sparse_layers,
)
from automl.compress.weight_quant import WeightQuantParams
from automl.data.bundle import Split
from automl.stages import find_stages
from automl.student.build import (
    build_student,
    fold,
    packed_size_bytes,
    tensor_costs,
    training_hooks,
)
from automl.student.packed import pack_student
from automl.training import FitSettings, cross_entropy_loss, fit
from search_spaces import Architecture

X = torch.randn(16, 1, 16, 16)
Y = torch.randint(0, 10, (16,))


def resnet():
    model = timm.create_model("resnet18", in_chans=1, num_classes=10).eval()
    return model, find_stages(model, X[:1])


def sparse_arch(stages, sparsity, scope="local", keep=None, bits=None) -> Architecture:
    n = len(stages)
    parts = {"sparsity": SparsityParams(sparsity=[sparsity] * n, sparsity_scope=scope)}
    if keep is not None:
        parts["channels"] = ChannelsParams(channel_keep=[keep] * n)
    if bits is not None:
        parts["weight_quant"] = WeightQuantParams(bits=[bits] * n, stem_head_bits=8)
    return Architecture.compose(parts)


def test_local_removes_each_tensor_s_own_smallest_weights():
    torch.manual_seed(0)
    weights = [torch.randn(8, 4, 3, 3), torch.randn(16, 8) * 10]
    masks = magnitude_masks(weights, [0.5, 0.25], "local")
    for w, m, s in zip(weights, masks, [0.5, 0.25], strict=True):
        assert m.shape == w.shape and int((m == 0).sum()) == round(s * w.numel())
        assert w[m == 0].abs().max() <= w[m == 1].abs().min()


def test_global_removes_the_same_number_below_one_threshold():
    torch.manual_seed(0)
    weights = [torch.randn(8, 4, 3, 3), torch.randn(16, 8) * 10]  # the second is larger
    masks = magnitude_masks(weights, [0.5, 0.25], "global")
    removed = [int((m == 0).sum()) for m in masks]
    assert sum(removed) == round(0.5 * 288) + round(0.25 * 128)
    cut = max(w[m == 0].abs().max() for w, m in zip(weights, masks, strict=True))
    assert all(w[m == 1].abs().min() >= cut for w, m in zip(weights, masks, strict=True))
    assert removed[0] > round(0.5 * 288)  # the small-weight tensor gives more than locally


def test_position_bits_take_the_cheaper_of_a_bitmap_and_an_index_list():
    assert index_bits(1024) == 10 and index_bits(1025) == 11
    assert position_bits(1024, 10) == 100  # 10 indices of 10 bits
    assert position_bits(1024, 900) == 1024  # a bitmap


def test_the_stem_and_the_head_stay_dense_and_masks_hold_through_training():
    model, stages = resnet()
    arch = sparse_arch(stages, 0.6)
    student = build_student(model, stages, arch, (X, Y))
    layers = sparse_layers(student, arch.params("sparsity"))
    names = {name for name, _, _ in layers}
    assert "conv1" not in names and "fc" not in names and "layer1.0.conv1" in names
    masks = {}
    for name, module, _ in layers:
        mask = next(p for p in module.parametrizations.weight if isinstance(p, WeightMask)).mask
        assert abs(float((mask == 0).float().mean()) - 0.6) < 0.01
        masks[name] = mask.clone()
    fit(
        student.model,
        Split(X, Y),
        cross_entropy_loss,
        FitSettings(epochs=3, lr=1e-2, weight_decay=0.0, batch_size=8),
        torch.device("cpu"),
        seed=0,
    )
    modules = dict(student.model.named_modules())
    for name, mask in masks.items():
        weight = modules[name].weight.detach()
        assert (weight[mask == 0] == 0).all() and (weight[mask == 1] != 0).all()
    assert not (modules["conv1"].weight == 0).any()


def test_with_channels_and_quantization_in_one_student_zeros_survive_the_fold():
    model, stages = resnet()
    arch = sparse_arch(stages, 0.5, "global", keep=0.5, bits=4)
    assert [t for t in arch.techniques] == ["channels", "sparsity", "weight_quant"]
    built = build_student(model, stages, arch, (X, Y))
    conv = built.model.layer2[0].conv1
    assert conv.out_channels == 64  # 128 channels, half kept
    chain = [type(p).__name__ for p in conv.parametrizations.weight]
    assert chain == ["WeightMask", "FakeQuantize"]  # masked, then quantized
    zeros = int((conv.weight == 0).sum())
    figure = packed_size_bytes(built, arch)
    fold(built.model)
    assert not parametrize.is_parametrized(conv)
    assert int((conv.weight == 0).sum()) == zeros
    assert abs(len(pack_student(built.model, stages, arch)) / figure - 1) <= 0.05


def test_the_packed_size_counts_non_zeros_at_their_bits_plus_positions():
    model, stages = resnet()
    dense = sparse_arch(stages, 0.0, bits=8)
    sparse = sparse_arch(stages, 0.75, bits=8)
    dense_student = build_student(model, stages, dense, (X, Y))
    sparse_student = build_student(model, stages, sparse, (X, Y))
    saved = 0
    for name, module, _ in sparse_layers(sparse_student, sparse.params("sparsity")):
        n = module.weight.numel()
        kept = int(torch.count_nonzero(module.weight))
        assert kept == n - round(0.75 * n)
        saved += (n - kept) * 8 - position_bits(n, kept)
        costs = tensor_costs(sparse_student.model)
        assert costs[f"{name}.weight"].values == n  # before the techniques' accounts
    difference = packed_size_bytes(dense_student, dense) - packed_size_bytes(sparse_student, sparse)
    assert abs(difference - saved / 8) <= 1


def trained_with_hooks(stages, model, params, steps_seen, epochs=4):
    """A student of `params` (a quarter of the channels, to train fast) trained on X for
    `epochs` (2 steps each), recording after every step each sparse layer's fraction of
    zeroed weights and its mask."""
    keep = ChannelsParams(channel_keep=[0.25] * len(stages))
    arch = Architecture.compose({"channels": keep, "sparsity": params})
    student = build_student(model, stages, arch, (X, Y))
    hook = training_hooks(student, arch)
    layers = sparse_layers(student, params)

    def on_step(step: int, total: int) -> None:
        hook(step, total)
        fractions = [float((m.weight == 0).float().mean()) for _, m, _ in layers]
        masks = [next(p for p in m.parametrizations.weight).mask.clone() for _, m, _ in layers]
        steps_seen.append((step, total, fractions, masks))

    settings = FitSettings(epochs=epochs, lr=1e-2, weight_decay=0.0, batch_size=8)
    cpu = torch.device("cpu")
    fit(student.model, Split(X, Y), cross_entropy_loss, settings, cpu, 0, on_step=on_step)


def test_an_iterative_schedule_rises_along_the_polynomial_then_holds():
    model, stages = resnet()
    params = SparsityParams(sparsity=[0.8] * len(stages), sparsity_schedule="iterative")
    seen = []
    trained_with_hooks(stages, model, params, seen, epochs=12)  # 24 steps
    total = seen[0][1]
    end = int(RAMP_END * total)
    assert seen[0][2][0] < 0.2  # nearly dense at first
    for step, _, fractions, _ in seen:
        expected = 0.8 * (1 - (1 - min(step, end) / end) ** 3)
        if step % max(1, total // UPDATES) == 0 or step >= end:
            assert all(abs(f - expected) < 0.01 for f in fractions), (step, fractions)
    means = [sum(f) / len(f) for _, _, f, _ in seen]
    assert means == sorted(means)  # never falls
    assert all(abs(f - 0.8) < 0.01 for f in seen[-1][2])


@pytest.mark.parametrize("rule", ["set", "rigl"])
def test_dynamic_sparse_training_moves_the_mask_at_a_fixed_sparsity(rule):
    model, stages = resnet()
    params = SparsityParams(sparsity=[0.7] * len(stages), sparse_training=rule)
    seen = []
    trained_with_hooks(stages, model, params, seen, epochs=10)
    counts = {tuple(int(m.sum()) for m in masks) for _, _, _, masks in seen}
    assert len(counts) == 1  # every layer keeps its number of weights
    first, last = seen[0][3], seen[-1][3]
    moved = sum(int((a != b).sum()) for a, b in zip(first, last, strict=True))
    assert moved > 0


def test_rigl_regrows_where_the_dense_gradient_is_largest():
    model, stages = resnet()
    params = SparsityParams(sparsity=[0.5] * len(stages), sparse_training="rigl")
    arch = Architecture.compose({"sparsity": params})
    student = build_student(model, stages, arch, (X, Y))
    layers = sparse_layers(student, params)
    schedule = MaskSchedule(layers, params)
    module = layers[0][1]
    mask = next(p for p in module.parametrizations.weight)
    for _, other, _ in layers:
        next(p for p in other.parametrizations.weight).dense_grad = torch.zeros_like(other.weight)
    inactive = torch.nonzero(mask.mask.flatten() == 0).flatten()[:5]
    grad = torch.zeros(module.weight.numel())
    grad[inactive] = 1.0
    mask.dense_grad = grad.view_as(module.weight)
    with torch.no_grad():
        schedule._move(0.001)  # a handful of weights, at least the five
    flat = mask.mask.flatten()
    assert (flat[inactive] == 1).all()
    assert (module.parametrizations.weight.original.flatten()[inactive] == 0).all()


def test_lamp_spreads_the_cut_and_empties_no_layer():
    torch.manual_seed(0)
    weights = [torch.randn(8, 4, 3, 3) * 0.01, torch.randn(16, 8)]  # the first far smaller
    scores = lamp_scores(weights[1])
    flat = weights[1].flatten()
    assert scores.flatten()[flat.abs().argmax()] == 1.0  # the largest weight scores 1
    least = flat.abs().argmin()  # the smallest weight's tail is the whole layer
    assert abs(scores.flatten()[least] - flat[least] ** 2 / (flat**2).sum()) < 1e-6
    by_global = magnitude_masks(weights, [0.9, 0.9], "global")
    by_lamp = magnitude_masks(weights, [0.9, 0.9], "lamp")
    total = round(0.9 * 288) + round(0.9 * 128)  # 374: more than the small layer holds
    assert sum(int((m == 0).sum()) for m in by_lamp) == total
    assert int((by_global[0] == 0).sum()) == 288  # global magnitude empties the small layer
    assert 0 < int((by_lamp[0] == 0).sum()) < 288  # LAMP keeps some of it
    assert all(int(m.sum()) >= 1 for m in by_lamp)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_magnitude_masks_are_nnis_level_pruner_masks(scope):
    """NNI 3.0's LevelPruner, an independent implementation of magnitude pruning (per layer, or
    ranked across layers with a `global_group_id`), cuts the very masks this tool cuts: so
    NNI would add nothing as the unstructured path's backend (README, NNI)."""
    from nni.compression.pruning import LevelPruner

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 10),
    )
    names = ["0", "2", "4"]
    # whole counts: NNI truncates ratio x size where this tool rounds it (0.3 x 216: 64, 65)
    ratios = [0.25, 0.5, 0.75] if scope == "local" else [0.5] * 3
    if scope == "local":
        config = [{"op_names": [n], "sparse_ratio": r} for n, r in zip(names, ratios, strict=True)]
    else:
        config = [{"op_names": names, "sparse_ratio": 0.5, "global_group_id": "all"}]
    _, theirs = LevelPruner(copy.deepcopy(model), config).compress()
    ours = magnitude_masks([model[int(n)].weight.detach() for n in names], ratios, scope)
    for name, mask in zip(names, ours, strict=True):
        assert torch.equal(theirs[name]["weight"].float(), mask), name
    if scope == "global":  # one threshold: the layers lose different fractions
        assert len({round(float(m.mean()), 2) for m in ours}) == 3
