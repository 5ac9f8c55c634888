"""The user's choices for one run: each setting's name, default, allowed names and help, once.

The command line builds its options from :class:`Parameters` and the Slicer module declares its
parameter node fields from it, so the three can never disagree. Imports nothing heavy (no
torch), so the Slicer module can fill its widgets before the dependencies are installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .errors import SettingError
from .imaging import SLICE_AXIS_NAMES, WINDOW_NAMES
from .modality import MODALITY_NAMES
from .models import DEVICE_NAMES, MODEL_NAMES
from .strategies import STRATEGIES

STRATEGY_NAMES = ("auto",) + tuple(STRATEGIES)
# auto: bf16 where the CPU multiplies bf16 natively and it passes the accuracy guard, else fp32;
# bf16/fp16: reduced precision of the model's parts (fp16: PyTorch autocast, for GPUs).
PRECISION_NAMES = ("auto", "fp32", "bf16", "fp16")
# auto: OpenVINO on CPUs with AVX-512, else ONNX Runtime, else PyTorch (see runtimes.choose).
BACKEND_NAMES = ("auto", "torch", "onnxruntime", "openvino")


def _setting(default, help: str, choices: tuple[str, ...] | None = None):
    """A field with its help text and, for named choices, the names it accepts."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Parameters:
    """Settings of a segmentation run (the defaults are what users get)."""

    model: str = _setting("litemedsam", "the SAM model (litemedsam is built in)", MODEL_NAMES)
    checkpoint: str | None = _setting(
        None, "a local weights file (SAM-compatible) instead of the built-in or downloaded one"
    )
    strategy: str = _setting("auto", "how prompts are made on a slice", STRATEGY_NAMES)
    window: str = _setting("auto", "intensity window", WINDOW_NAMES)
    modality: str = _setting(
        "auto",
        "CT or radiograph (auto: what the file says, else the image content)",
        MODALITY_NAMES,
    )
    device: str = _setting("auto", "where the model runs", DEVICE_NAMES)
    precision: str = _setting("auto", "numeric precision of the model", PRECISION_NAMES)
    backend: str = _setting("auto", "what runs the model on the CPU", BACKEND_NAMES)
    embedding_cache: bool = _setting(True, "keep slice embeddings to skip the encoder on re-runs")
    propagate: bool = _setting(
        False, "prompts on a few slices only: carry them to the neighbouring slices"
    )
    slice_axis: str = _setting("auto", "slice orientation", SLICE_AXIS_NAMES)
    fill_nonfinite: bool = _setting(
        False,
        "replace NaN or infinite voxels by their slice's minimum "
        "(without it such a volume is refused)",
    )

    @classmethod
    def default(cls, name: str):
        """The default value of setting ``name``."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...] | None:
        """The names setting ``name`` accepts, or None when it is not a named choice."""
        return cls.__dataclass_fields__[name].metadata.get("choices")

    @classmethod
    def help(cls, name: str) -> str:
        return cls.__dataclass_fields__[name].metadata.get("help", "")

    @classmethod
    def choice_names(cls) -> tuple[str, ...]:
        """The settings that are named choices, in declaration order."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("choices"))

    def validate(self) -> Parameters:
        """Raise ValueError naming the first setting that is not one of its allowed names."""
        for name in self.choice_names():
            value, allowed = getattr(self, name), self.choices(name)
            if name == "model" and value in ("vit_b", "vit_l", "vit_h") and self.checkpoint:
                continue  # any SAM-compatible file with its architecture's name
            if name == "device" and str(value).startswith("cuda:"):
                continue  # a numbered GPU
            if value not in allowed:
                raise SettingError(
                    f"Unknown {name.replace('_', ' ')} {value!r}: choose one of"
                    f" {', '.join(allowed)}."
                )
        return self
