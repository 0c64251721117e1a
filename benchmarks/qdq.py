"""Trained-scale int8 export against recalibration, on Fashion-MNIST: how far ONNX Runtime's
int8 model is from the PyTorch model it came from.

    python benchmarks/qdq.py [--subset 10000] [--epochs 5] [--seeds 0 1 2] [--bits 8 4]
                             [--conditions recalibrated trained lsq]

One architecture per weight bit-width (the smallest corner of the config's space: the fewest
blocks, 1/8 of each stage's channels; stem and head at 8 bits), trained twice per seed on
the same images, epochs and distillation (benchmarks/_controlled.py):
- `recalibrated`: fp32 activations in training (`act_bits: 32`); the export calibrates every
  activation range on 256 training images and recomputes every weight scale, as every export
  did before trained scales;
- `trained`: uint8 activations fake-quantized in training (`act_bits: 8`); the export takes
  the trained ranges and weight scales (`automl.deploy.onnx.trained_overrides`);
- `lsq`: as `trained`, with learned weight steps (`quantizer: lsq`) instead of min-max scales.
Each is exported as `pick` exports it (`deploy_onnx`, no reduce-range retry counted) and
scored on the 10,000 test images by PyTorch and by ONNX Runtime. The gap is PyTorch's test
accuracy minus ONNX Runtime's; `disagree` counts test images whose class differs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


CONDITIONS = {  # name: (act_bits, quantizer)
    "recalibrated": (32, "minmax"),
    "trained": (8, "minmax"),
    "lsq": (8, "lsq"),
}


def architecture(stages, bits: int, act_bits: int, quantizer: str):
    from search_spaces import Architecture

    return Architecture.model_validate(
        {
            "techniques": ["depth", "channels", "weight_quant"],
            "stages": [
                {"blocks": s.min_blocks, "channel_keep": 0.125, "bits": bits} for s in stages
            ],
            "criterion": "l2",
            "stem_head_bits": 8,
            "act_bits": act_bits,
            "quantizer": quantizer,
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
        }
    )


def main() -> int:
    from _controlled import arguments, experiment, mean_sd

    from automl.compress.weight_quant import WEIGHT_BITS
    from automl.deploy.check import deploy_onnx
    from automl.student.build import deploy_form
    from automl.trial import run_trial

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    args = arguments(parser)
    exp = experiment(args)
    ctx = exp.trial_context()
    chosen = [
        name
        for name in CONDITIONS
        if not args.conditions or any(name.startswith(c) for c in args.conditions)
    ]
    rows: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for bits in args.bits:
            for name in chosen:
                arch = architecture(exp.stages, bits, *CONDITIONS[name])
                result, model = run_trial(arch, ctx, seed)
                if name == "recalibrated":  # the export before trained scales: none of them
                    for layer in model.modules():
                        layer.__dict__.pop(WEIGHT_BITS, None)
                with tempfile.TemporaryDirectory() as tmp:
                    dep = deploy_onnx(model, deploy_form(arch), exp.data, Path(tmp) / "m.onnx")
                row = {
                    "seed": seed,
                    "val": result.val_accuracy,
                    "torch": dep.torch_test_accuracy,
                    "ort": dep.onnx_test_accuracy,
                    "disagree": dep.disagree,
                    "format": dep.format,
                    "reduce_range": dep.reduce_range,
                    "trained_tensors": dep.trained_tensors,
                }
                rows.setdefault(f"{bits}-bit weights, {name}", []).append(row)
                print(f"{bits}-bit {name:12s} {row}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{args.subset} training images, {args.epochs} epochs, seeds {args.seeds}")
    print("| condition | val | PyTorch test | ONNX Runtime test | gap (points) | disagree |")
    print("|---|---|---|---|---|---|")
    for name, rs in rows.items():

        def mean(key: str, rs=rs) -> float:
            return statistics.mean(r[key] for r in rs)

        gaps = [100 * (r["torch"] - r["ort"]) for r in rs]
        print(
            f"| {name} | {mean('val'):.4f} | {mean('torch'):.4f} | {mean('ort'):.4f} | "
            f"{mean_sd(gaps, 2, signed=True)} | {mean('disagree'):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
