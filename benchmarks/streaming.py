"""Image folders held in memory against streamed from disk: seconds to load, seconds per epoch
of reading batches, and peak memory, each mode in a fresh process.

    python benchmarks/streaming.py [--images 4000] [--size 64] [--epochs 2]
    python benchmarks/streaming.py --images 100000 --size 224 --format jpg --modes auto

Writes a folder of RGB files (10 classes; PNG of random pixels, or JPEG photographs'
stand-ins: smooth colour fields with noise, about 10 kB each at 224 px), then for each mode
runs `load_data` and `--epochs` passes over the training split in batches of 64 (the reading
a trial does, without the model), reporting the median epoch. Peak memory is the largest
resident set of the process and the largest of its children (ru_maxrss). Modes: `memory`,
`stream0` and `stream2` (streamed with 0 or 2 workers), and `auto` (`stream: null`, the
default, which chooses by the decoded size).
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


MODES = {  # name: (label, stream, workers)
    "memory": ("in memory", "memory", 0),
    "stream0": ("streamed, 0 workers", "stream", 0),
    "stream2": ("streamed, 2 workers", "stream", 2),
    "auto": ("stream: null (the default), 2 workers", "auto", 2),
}


def write_folder(root: Path, images: int, size: int, fmt: str) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, size, dtype=np.float32)
    for i in range(images):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "png":
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
            continue
        a, b, c = rng.uniform(-128, 255, (3, 3))  # a colour and its gradients down and across
        field = a + grid[:, None, None] * b + grid[None, :, None] * c  # (size, size, 3)
        noise = rng.normal(0, 8, (size, size, 3))
        pixels = np.clip(field + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def measure(root: Path, size: int, stream: bool | None, workers: int, epochs: int) -> dict:
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
    streamed = not hasattr(data.train, "x")  # a held split keeps its tensor `x`
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
        "streamed": streamed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--format", choices=["png", "jpg"], default="png")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES)[:3])
    parser.add_argument("--tmp", type=Path, help="where to write the folder (default: /tmp)")
    parser.add_argument(
        "--folder", type=Path, help="write the folder here and keep it; reused if it exists"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, stream, workers = Path(args.child[0]), args.child[1], int(args.child[2])
        chosen = {"memory": False, "stream": True, "auto": None}[stream]
        print(json.dumps(measure(root, args.size, chosen, workers, args.epochs)))
        return 0
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = args.folder or Path(tmp) / "folder"
        start = time.perf_counter()
        if not root.is_dir():
            write_folder(root, args.images, args.size, args.format)
        on_disk = sum(p.stat().st_size for p in root.rglob("*.*")) / 1e6
        print(
            f"{args.images} RGB {args.format.upper()} images at {args.size} px ({on_disk:.0f} MB "
            f"on disk, {args.images * 3 * args.size**2 * 4 / 1e6:.0f} MB decoded as float32, "
            f"written in {time.perf_counter() - start:.0f} s), {args.epochs} epoch(s) of "
            "batches of 64"
        )
        print(
            "| mode | streamed | load s | epoch s (median) | peak MB (main) | "
            "peak MB (largest child) |"
        )
        print("|---|---|---|---|---|---|")
        for mode in args.modes:
            label, stream, workers = MODES[mode]
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
                f"| {label} | {'yes' if r['streamed'] else 'no'} | {r['load_s']:.1f} | "
                f"{r['epoch_s']:.2f} | {r['peak_mb']:.0f} | {r['worker_peak_mb']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
