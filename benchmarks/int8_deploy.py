"""int8 against fp32 ONNX for every front model of at most 8 bits: file size and ONNX Runtime
latency at batch 1 and 32, measured side by side.

    python benchmarks/int8_deploy.py runs/digits [--rounds 9] [--threads 1]

Each model is exported twice (fp32, and int8 QDQ by ONNX Runtime's static quantization as
`pick` does). All sessions are timed together in interleaved rounds
(`measure.interleaved_latency_ms`); the figure is the median over rounds of each round's
median. Prints a table; the summary line counts the models where int8 is smaller than 30%
of fp32 and faster at batch 32.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from automl.compress import onnx_format
from automl.deploy.check import calibration_images
from automl.deploy.onnx import INPUT_NAME, export_fp32, ort_accuracy, quantize_int8, session
from automl.measure import interleaved_latency_ms
from automl.run.finished import open_search_run
from automl.student.build import deploy_form


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    run = open_search_run(args.run)
    data = run.load_data()
    x_test, y_test = data.test.x.numpy(), data.test.y.numpy()
    batches = {1: x_test[:1], 32: x_test[:32]}
    rows, runners = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in run.front:
            model, arch = run.load_model(m, data)
            if onnx_format(deploy_form(arch)) != "int8":
                continue
            fp32 = export_fp32(model, data.example_input(1), Path(tmp) / f"{m.trial}_fp32.onnx")
            int8 = Path(tmp) / f"{m.trial}_int8.onnx"
            quantize_int8(
                fp32, calibration_images(data, run.trial_seed(m.trial)), int8, model=model
            )
            row = {
                "trial": m.trial,
                "fp32_bytes": fp32.stat().st_size,
                "int8_bytes": int8.stat().st_size,
            }
            for name, path in (("fp32", fp32), ("int8", int8)):
                sess = session(path, args.threads)
                row[f"{name}_acc"] = ort_accuracy(sess, x_test, y_test)
                for b, x in batches.items():
                    runners[f"{m.trial}|{name}|{b}"] = lambda s=sess, x=x: s.run(
                        None, {INPUT_NAME: x}
                    )
            rows.append(row)
        times = interleaved_latency_ms(runners, rounds=args.rounds, calls=10, warmup=3)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, ONNX Runtime CPU, {args.threads} "
        f"thread(s), {args.rounds} interleaved rounds of 10 calls"
    )
    print(
        "| trial | int8 / fp32 size | fp32 acc | int8 acc | batch 1 fp32 -> int8 ms | "
        "batch 32 fp32 -> int8 ms | batch 32 speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    good = 0
    for r in rows:
        t = {k: times[f"{r['trial']}|{k}"] for k in ("fp32|1", "int8|1", "fp32|32", "int8|32")}
        ratio = r["int8_bytes"] / r["fp32_bytes"]
        speedup = t["fp32|32"] / t["int8|32"]
        good += ratio <= 0.30 and speedup > 1
        print(
            f"| {r['trial']} | {ratio:.1%} | {r['fp32_acc']:.4f} | {r['int8_acc']:.4f} | "
            f"{t['fp32|1']:.3f} -> {t['int8|1']:.3f} | {t['fp32|32']:.3f} -> "
            f"{t['int8|32']:.3f} | {speedup:.2f}x |"
        )
    print(
        f"\n{good} of {len(rows)} int8 models are at most 30% of their fp32 size and faster "
        "at batch 32."
    )


if __name__ == "__main__":
    main()
