"""The choice of runtime and precision for a model, from the CPU's flags and what is installed.

Why each choice is made, with the measurements behind it, is in the documentation on speed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

from . import cpu
from .errors import SettingError
from .parameters import BACKEND_NAMES

PRECISIONS = ("fp32", "bf16", "fp16")
#: Precisions each backend runs (fp16: autocast on GPUs).
SUPPORTED_PRECISIONS = {"torch": PRECISIONS, "onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}


@dataclass(frozen=True)
class Choice:
    backend: str  # torch, onnxruntime or openvino
    precision: str  # fp32, bf16 or fp16
    guarded: bool  # bf16 chosen automatically: kept only if it passes the accuracy guard
    because: str  # the facts that decided it, for the log line


def installed_runtimes() -> frozenset[str]:
    """The CPU runtimes this environment can use (both export through the onnx package)."""

    def present(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    if not present("onnx"):
        return frozenset()
    return frozenset(name for name in ("onnxruntime", "openvino") if present(name))


def _auto_backend(
    flags: frozenset[str], installed: frozenset[str], device: str, architecture: str
) -> tuple[str, str]:
    if device != "cpu":
        return "torch", f"device {device}"
    if architecture != "litemedsam":
        # SAM ViT-H's 2.5 GB of weights exceed ONNX's 2 GB file limit; these models are for GPUs.
        return "torch", f"{architecture} runs in PyTorch"
    if "openvino" in installed and "avx512f" in flags:
        return "openvino", "avx512f: OpenVINO is faster there"
    if "onnxruntime" in installed:
        return "onnxruntime", (
            "no avx512f: OpenVINO is no faster there"
            if "openvino" in installed
            else "OpenVINO not installed"
        )
    if "openvino" in installed:
        return "openvino", "ONNX Runtime not installed"
    return "torch", "no ONNX Runtime or OpenVINO installed"


def _check_asked(backend: str, precision: str, installed: frozenset[str], device: str) -> None:
    """Raise SettingError for a backend or precision that is unknown, or a CPU runtime asked for
    on another device or not installed."""
    if backend not in BACKEND_NAMES:
        raise SettingError(
            f"Unknown backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}."
        )
    if precision not in ("auto",) + PRECISIONS:
        raise SettingError(
            f"Unknown precision {precision!r}: choose one of auto, {', '.join(PRECISIONS)}."
        )
    if backend in ("auto", "torch"):
        return
    if device != "cpu":
        raise SettingError(f"The {backend} backend runs on the CPU only (device is {device}).")
    if backend not in installed:
        raise SettingError(f"The {backend} backend is not installed: pip install {backend} onnx.")


def choose(
    flags: Iterable[str],
    installed: Iterable[str],
    device: str = "cpu",
    architecture: str = "litemedsam",
    backend: str = "auto",
    precision: str = "auto",
) -> Choice:
    """The backend and precision for a model, from the CPU's flags and the installed runtimes.

    Arguments:
      flags: the CPU's flags (``/proc/cpuinfo`` names, e.g. ``avx512f``, ``amx_bf16``).
      installed: the CPU runtimes that can be used (:func:`installed_runtimes`).
      device: ``cpu``, ``cuda`` or ``mps``; architecture: the model's (``litemedsam``, ``vit_h``..).
      backend, precision: ``auto``, or what to use (checked, not chosen).

    Returns:
      A :class:`Choice`. With ``auto``: OpenVINO where the CPU has AVX-512, else ONNX Runtime
      (else PyTorch); bf16 only for the built-in model, only where the CPU multiplies bf16
      natively (``amx_bf16`` or ``avx512_bf16``), and then ``guarded`` (kept only if it passes the
      precision check). The measurements behind this are in the documentation on speed.

    Raises:
      SettingError: an unknown backend or precision, a CPU runtime asked for on another device or
      not installed, or a precision the backend cannot run.
    """
    flags, installed = frozenset(flags), frozenset(installed)
    _check_asked(backend, precision, installed, device)
    if backend == "auto":
        backend, because = _auto_backend(flags, installed, device, architecture)
    else:
        because = "as asked"
    native = cpu.has_native_bf16(flags)
    if precision != "auto":
        if precision not in SUPPORTED_PRECISIONS[backend]:
            raise SettingError(
                f"The {backend} backend runs {', '.join(SUPPORTED_PRECISIONS[backend])} only, not"
                f" {precision}."
            )
        return Choice(backend, precision, False, f"{because}; {precision} as asked")
    if (
        device == "cpu"
        and native
        and architecture == "litemedsam"
        and "bf16" in SUPPORTED_PRECISIONS[backend]
    ):
        found = " ".join(flag for flag in cpu.NATIVE_BF16_FLAGS if flag in flags)
        return Choice(backend, "bf16", True, f"{because}; {found}: native bf16")
    return Choice(
        backend, "fp32", False, f"{because}; {'no native bf16' if not native else 'fp32'}"
    )
