"""The user's choices for one run, and the names each choice accepts.

Imports nothing heavy (no torch), so the Slicer module can fill its widgets before the
dependencies are installed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .imaging import SLICE_AXIS_NAMES, WINDOW_NAMES
from .models import DEVICE_NAMES, MODEL_NAMES
from .strategies import STRATEGIES

STRATEGY_NAMES = ("auto",) + tuple(STRATEGIES)
# fp32 everywhere; bf16/fp16: autocast of the image encoder; auto: bf16 where the hardware has it.
PRECISION_NAMES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Parameters:
    """Settings of a segmentation run (the defaults are what users get)."""

    model: str = "litemedsam"
    checkpoint: Optional[str] = None  # a local weights file; None: built in or downloaded once
    strategy: str = "auto"
    window: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    embedding_cache: bool = True  # keep slice embeddings to skip the encoder on re-runs
    propagate: bool = False  # prompts on a few slices only: carry them to the neighbouring slices
    slice_axis: str = "auto"

    def validate(self) -> "Parameters":
        """Raise ValueError naming the first setting that is not one of its allowed names."""
        choices = {"strategy": STRATEGY_NAMES, "window": WINDOW_NAMES, "precision": PRECISION_NAMES,
                   "slice_axis": SLICE_AXIS_NAMES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}.")
        if self.model not in MODEL_NAMES and not (self.model in ("vit_b", "vit_l", "vit_h") and self.checkpoint):
            raise ValueError(f"Unknown model {self.model!r}: choose one of {', '.join(MODEL_NAMES)}.")
        if self.device not in DEVICE_NAMES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"Unknown device {self.device!r}: choose one of {', '.join(DEVICE_NAMES)}.")
        return self
