"""Images read from disk as they are needed, through a torch DataLoader, so a folder of any
size needs no more memory than a few batches.

A `StreamedSplit` keeps file paths and labels only. `batches` decodes each batch in
DataLoader workers (pinned memory when training on CUDA); a file that does not decode
stops the command with a UserError naming it, raised in the main process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from automl.errors import UserError


@dataclass(frozen=True)
class Decoder:
    """How one file becomes a model input: convert, resize, scale, normalise (picklable, so
    DataLoader workers receive it)."""

    mode: str  # PIL mode: "L" or "RGB"
    size: int
    divide_by: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def raw(self, path: Path) -> np.ndarray:
        """(C, H, W) float32 in [0, 1] before normalisation; UserError names a bad file."""
        try:
            with Image.open(path) as img:
                img = eight_bit(img, path).convert(self.mode)
                img = img.resize((self.size, self.size), Image.BILINEAR)
                pixels = np.asarray(img, dtype=np.float32)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise UserError(f"data.root: cannot read image {path}: {exc}") from None
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return pixels.transpose(2, 0, 1) / self.divide_by

    def __call__(self, path: Path) -> torch.Tensor:
        x = torch.from_numpy(self.raw(path))
        mean = torch.tensor(self.mean)[:, None, None]
        return (x - mean) / torch.tensor(self.std)[:, None, None]


# Pillow's 16-bit greyscale modes (PNG and TIFF read as these): 65535 is white
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def eight_bit(img: Image.Image, path: Path) -> Image.Image:
    """`img` in a mode of 8 bits per channel, at the same brightness: Pillow's `convert("L")`
    clips 16-bit greyscale to 255 (a gradient turns white) instead of scaling it. A 16-bit
    PNG opens as "I;16" or "I"; 32-bit integer and float images, whose white no file states,
    are refused by mode."""
    if img.mode in SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG"):
        scaled = np.asarray(img, dtype=np.float64) * (255 / 65535)
        return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("I", "F"):
        raise UserError(
            f"data.root: image {path} is of mode {img.mode} ({img.format}: 32-bit "
            f"{'integer' if img.mode == 'I' else 'float'} pixels, whose range no file states); "
            "save it with 8 or 16 bits per channel"
        )
    return img


class _Files(Dataset):
    """(index, input, error) per file; a decode error travels as text, not as an exception,
    so the main process can name the file in one clear message."""

    def __init__(self, paths: tuple[Path, ...], decoder: Decoder) -> None:
        self.paths, self.decoder = paths, decoder
        self.blank = torch.zeros(len(decoder.mean), decoder.size, decoder.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str]:
        try:
            return i, self.decoder(self.paths[i]), ""
        except UserError as exc:
            return i, self.blank, str(exc)


@dataclass(frozen=True)
class StreamedSplit:
    """A split read from disk batch by batch (meets `automl.data.bundle.Images`)."""

    paths: tuple[Path, ...]
    y: torch.Tensor
    decoder: Decoder
    workers: int = 2
    pin_memory: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.decoder.mean), self.decoder.size, self.decoder.size

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.decoder(self.paths[int(i)]) for i in idx])

    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks = [order[s : s + batch_size].tolist() for s in range(0, len(order), batch_size)]
        loader = DataLoader(
            _Files(self.paths, self.decoder),
            batch_sampler=chunks,
            num_workers=self.workers,
            pin_memory=self.pin_memory,
        )
        for idx, x, errors in loader:
            bad = next((e for e in errors if e), None)
            if bad is not None:
                raise UserError(bad)
            yield idx, x

    def to(self, device: torch.device) -> StreamedSplit:
        """Batches stay on disk until used; pinned for a fast copy to CUDA."""
        return dataclasses.replace(self, pin_memory=device.type == "cuda")
