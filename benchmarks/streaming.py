"""Image folders held in memory against streamed from disk: seconds to load, seconds per epoch
of reading batches, and peak memory, each mode in a fresh process.

    python benchmarks/streaming.py [--images 4000] [--size 64] [--epochs 2]

Writes a folder of random RGB PNG files (10 classes), then for each mode runs
`load_data` and `--epochs` passes over the training split in batches of 64 (the reading a
trial does, without the model), reporting the median epoch. Peak memory is the largest
resident set of the process and the largest of its children (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_folder(root: Path, images: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


def measure(root: Path, size: int, stream: bool, workers: int, epochs: int) -> dict:
    """Runs in a child process: load, then read every training batch `epochs` times."""
    import resource

    import torch

    from automl.data import load_data
    from automl.data.image_folder import ImageFolderConfig

    torch.set_num_threads(1)
    start = time.perf_counter()
    config = ImageFolderConfig(root=root, image_size=size, stream=stream, workers=workers)
    data = load_data(config)
    load_s = time.perf_counter() - start
    times = []
    for epoch in range(epochs):
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for _, x in data.train.batches(order, 64):
            x.sum()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "load_s": load_s,
        "epoch_s": statistics.median(times),
        "peak_mb": peak / 1024,
        "worker_peak_mb": children / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, stream, workers = Path(args.child[0]), args.child[1] == "1", int(args.child[2])
        print(json.dumps(measure(root, args.size, stream, workers, args.epochs)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        write_folder(root, args.images, args.size)
        print(f"{args.images} RGB images at {args.size} px, {args.epochs} epochs of batches of 64")
        print("| mode | load s | epoch s (median) | peak MB (main) | peak MB (largest child) |")
        print("|---|---|---|---|---|")
        for label, stream, workers in (
            ("in memory", 0, 0),
            ("streamed, 0 workers", 1, 0),
            ("streamed, 2 workers", 1, 2),
        ):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--size",
                    str(args.size),
                    "--epochs",
                    str(args.epochs),
                    "--child",
                    str(root),
                    str(stream),
                    str(workers),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| {label} | {r['load_s']:.1f} | {r['epoch_s']:.2f} | {r['peak_mb']:.0f} | "
                f"{r['worker_peak_mb']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
