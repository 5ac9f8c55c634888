"""What the CPU can do: its model name and the instruction-set flags that decide the runtime.

On Linux the flags come from ``/proc/cpuinfo`` (the kernel's names: ``avx2``, ``avx512f``,
``avx512_bf16``, ``amx_bf16``, ...). Elsewhere (Windows, macOS) PyTorch's CPU probes give the same
facts under the same names. Everything here is plain data, so the choice that depends on it
(:func:`runtime_choice.choose`) can be tested with any CPU's flags.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: The flags that matter for the runtime choice, in the order they are reported.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
#: Flags meaning the CPU multiplies bf16 matrices in hardware (AMX tiles or AVX-512 BF16).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        return has_native_bf16(self.flags)

    @property
    def relevant_flags(self) -> tuple[str, ...]:
        return tuple(flag for flag in RELEVANT_FLAGS if flag in self.flags)

    def key(self) -> str:
        """A file-name-safe name of this kind of CPU (model and relevant flags), for caches of
        compiled models, which are not portable between CPU kinds."""
        model = re.sub(r"[^A-Za-z0-9]+", "-", self.model).strip("-").lower() or "unknown-cpu"
        return "_".join((model,) + self.relevant_flags)


def has_native_bf16(flags: Iterable[str]) -> bool:
    return any(flag in set(flags) for flag in NATIVE_BF16_FLAGS)


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and flags in ``/proc/cpuinfo`` text."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or platform.machine(), flags)


def _probed_flags() -> frozenset[str]:
    """The relevant flags from PyTorch's CPU probes (private but stable helpers; none if absent)."""
    try:
        import torch.cpu as probes
    except ImportError:
        return frozenset()
    checks = {
        "avx2": "_is_avx2_supported",
        "avx512f": "_is_avx512_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_bf16": "_is_amx_tile_supported",
        "avx512_vnni": "_is_vnni_supported",
    }
    found = set()
    for flag, probe in checks.items():
        try:
            if getattr(probes, probe)():
                found.add(flag)
        except (AttributeError, RuntimeError):
            pass
    return frozenset(found)


@lru_cache(maxsize=1)
def current() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    path = Path("/proc/cpuinfo")
    if path.is_file():
        info = parse_cpuinfo(path.read_text(errors="replace"))
        if info.flags:
            return info
    return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", _probed_flags())
