"""How well cheaper latency figures rank students as the deployed runtime does, and what timing
the deployed form costs per trial.

    python benchmarks/latency_proxies.py [--config configs/digits.yaml] [--students 40]

Draws students from the config's search space (random sampler, seed 0), builds each from the
cached teacher (no training: latency does not depend on the weights), and measures, on the
folded deployed form: ONNX Runtime latency as `pick` ships it (int8 QDQ at <= 8 bits, else
fp32; what `latency.runtime: onnxruntime` optimises), PyTorch eager latency, and MACs. Prints
Kendall's tau of each cheaper figure against the deployed latency, and the seconds each
measurement takes per student (median).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import optuna
    from scipy.stats import kendalltau

    from automl.compress import onnx_format
    from automl.config import load_config
    from automl.experiment import prepare
    from automl.measure import macs_and_params
    from automl.student.build import deploy_form, deployed_copy
    from automl.trial import search_latency_ms

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "digits.yaml")
    parser.add_argument("--students", type=int, default=40)
    args = parser.parse_args()

    cfg = load_config(args.config)
    exp = prepare(cfg)
    ctx = exp.trial_context()
    space = cfg.search_space.bind(exp.stages)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    onnx_cfg = cfg.latency.model_copy(update={"runtime": "onnxruntime"})
    torch_cfg = cfg.latency.model_copy(update={"runtime": "torch"})
    rows = []
    for _ in range(args.students):
        arch = space.sample(study.ask())
        deployed = deployed_copy(ctx.build(arch), arch)
        int8 = onnx_format(deploy_form(arch)) == "int8"
        t0 = time.perf_counter()
        onnx_ms = search_latency_ms(deployed, int8, exp.data, onnx_cfg)
        t1 = time.perf_counter()
        torch_ms = search_latency_ms(deployed, int8, exp.data, torch_cfg)
        t2 = time.perf_counter()
        macs, _ = macs_and_params(deployed, exp.data.example_input(1))
        t3 = time.perf_counter()
        rows.append((onnx_ms, torch_ms, macs, int8, t1 - t0, t2 - t1, t3 - t2))
        print(
            f"{'int8' if int8 else 'fp32'} onnx {onnx_ms:.3f} ms torch {torch_ms:.3f} ms "
            f"{macs / 1e6:.1f} MMACs",
            flush=True,
        )
    onnx_ms = [r[0] for r in rows]
    print(
        f"\n{len(rows)} students of {args.config.name}, latency batch {cfg.latency.batch_size}, "
        f"{cfg.latency.threads} thread(s), {cfg.latency.repeats} repeats"
    )
    print("| figure | Kendall tau against ONNX Runtime latency | seconds per student (median) |")
    print("|---|---|---|")
    onnx_seconds = statistics.median(r[4] for r in rows)
    print(f"| ONNX Runtime latency (deployed form) | 1 | {onnx_seconds:.2f} |")
    for name, col, sec in (("PyTorch eager latency", 1, 5), ("MACs", 2, 6)):
        tau = kendalltau([r[col] for r in rows], onnx_ms).statistic
        print(f"| {name} | {tau:.3f} | {statistics.median(r[sec] for r in rows):.2f} |")
    ratio = statistics.median(r[1] / r[0] for r in rows)
    print(f"PyTorch eager over ONNX Runtime latency, median over students: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
