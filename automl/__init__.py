"""Compression search: pruned, quantized students distilled from a timm teacher."""

from __future__ import annotations

__version__ = "0.1.0"
