"""Preparing the runtime that runs a SAM model's two parts (image encoder, prompt decoder).

- ``torch``: the model itself, on any device, optionally under autocast (:mod:`torch_parts`).
- ``onnxruntime``: the parts exported once to ONNX and run by ONNX Runtime (CPU, float32).
- ``openvino``: the same ONNX files compiled by OpenVINO for this CPU, in float32 or bf16.

:func:`runtime_choice.choose` decides from the CPU's flags and what is installed; :func:`prepare`
builds the choice: every new export or compiled model is compared with PyTorch on a test input
before it is kept (:mod:`exports`, files in :mod:`runtime_files`, parts in :mod:`cpu_parts`), and
a bf16 chosen automatically is kept only when it passes the precision check its caller hands in
(the accuracy guard, from the engine's builder), whose verdict is kept too; with no check it is
not used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import cpu
from .cpu_parts import OnnxRuntimePart, OpenVinoPart, PartCall
from .exports import decoder_spec, encoder_spec, onnx_file, onnx_path, openvino_blob, openvino_path
from .runtime_choice import Choice, choose, installed_runtimes
from .runtime_files import (
    model_stem,
    read_cache_file,
    runtime_version,
    runtimes_dir,
    write_cache_file,
)
from .torch_parts import TorchDecoder, TorchEncoder


@dataclass
class Runtime:
    """What runs the two parts: callables with the PyTorch parts' signatures, and a keyword
    ``threads``: the calling lane's thread count (None: the part's own)."""

    encoder: Callable
    decoder: Callable
    precision: str

    @property
    def backend(self) -> str:
        encoder, decoder = self.encoder.name, self.decoder.name
        return encoder if encoder == decoder else f"{encoder} encoder, {decoder} decoder"


class Verdict(Protocol):
    """A precision check's judgement of a reduced-precision runtime."""

    passed: bool

    def summary(self) -> str: ...

    def as_dict(self) -> dict: ...


class PrecisionCheck(Protocol):
    """Judges a reduced-precision runtime against its float32 twin (``accuracy_guard.GUARD``).

    ``rule`` names the rule: it is part of the kept verdict's key, so a verdict made under another
    rule is made again. ``check(model, reference, candidate)`` takes the two :class:`Runtime`
    objects and returns a :class:`Verdict`; ``verdict(stored)`` makes one again from what its
    ``as_dict()`` gave, and raises TypeError or ValueError on a dict it cannot read.
    """

    rule: str

    def check(self, model, reference: Runtime, candidate: Runtime) -> Verdict: ...

    def verdict(self, stored: dict) -> Verdict: ...


#: Rough seconds to build each thing on 2 cores, for the one line announcing the preparation.
_BUILD_SECONDS = {"onnx-encoder": 12, "onnx-decoder": 6, "openvino": 3, "guard": 30}


def _verdict_path(model, backend: str, rule: str) -> tuple[Path, str]:
    info = cpu.current()
    path = (
        runtimes_dir()
        / f"{backend}-{runtime_version(backend)}"
        / info.key()
        / f"{model_stem(model)}-bf16-verdict.json"
    )
    return (
        path,
        f"{path.name} {rule} encoder-only {backend} {runtime_version(backend)} {info.model} "
        f"{' '.join(info.relevant_flags)}",
    )


def part_runtimes(backend: str, precision: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """``((runtime, precision), (runtime, precision))`` of the encoder and the decoder.

    Reduced precision is for the encoder only (where the time goes): a bf16 decoder cost masks
    accuracy against the reference (see the documentation on speed). OpenVINO's float32 decoder
    was slower than ONNX Runtime's, so a float32 decoder runs on ONNX Runtime where it is
    installed.
    """
    decoder = (
        "onnxruntime"
        if backend == "openvino" and "onnxruntime" in installed_runtimes()
        else backend
    )
    return (backend, precision), (decoder, "fp32")


def _cpu_runtime(model, backend: str, precision: str, threads: int) -> Runtime:
    """The ONNX Runtime or OpenVINO parts (ONNX files exported, compiled models made as needed)."""
    parts = []
    for spec, (runtime, part_precision) in zip(
        (encoder_spec(model), decoder_spec(model)), part_runtimes(backend, precision), strict=True
    ):
        onnx_payload, _ = onnx_file(model, spec)
        if runtime == "onnxruntime":
            part = OnnxRuntimePart(onnx_payload, spec.inputs, threads)
        else:
            part = OpenVinoPart(
                openvino_blob(model, spec, onnx_payload, part_precision)[0],
                spec.inputs,
                threads,
                part_precision,
            )
        parts.append(PartCall(part, spec.kind, part_precision))
    return Runtime(parts[0], parts[1], precision)


def _runtime(model, backend: str, precision: str, threads: int) -> Runtime:
    if backend == "torch":
        return Runtime(TorchEncoder(model, precision), TorchDecoder(model), precision)
    return _cpu_runtime(model, backend, precision, threads)


def _missing_seconds(model, choice: Choice, check: PrecisionCheck | None) -> float:
    """Rough seconds of building what the cache lacks for ``choice`` (0 when all is there)."""
    seconds = 0.0
    precisions = [choice.precision if check is not None or not choice.guarded else "fp32"]
    if (
        choice.guarded
        and check is not None
        and read_cache_file(*_verdict_path(model, choice.backend, check.rule)) is None
    ):
        seconds += _BUILD_SECONDS["guard"]
        precisions.append("fp32")
    if choice.backend == "torch":
        return seconds
    for precision in precisions:
        for kind, (runtime, part_precision) in zip(
            ("encoder", "decoder"), part_runtimes(choice.backend, precision), strict=True
        ):
            if (
                runtime == "openvino"
                and read_cache_file(*openvino_path(model, kind, part_precision)) is None
            ):
                seconds += _BUILD_SECONDS["openvino"]
    for kind in ("encoder", "decoder"):
        if read_cache_file(*onnx_path(model, kind)) is None:
            seconds += _BUILD_SECONDS[f"onnx-{kind}"]
    return seconds


def _stored_verdict(path: Path, key: str, check: PrecisionCheck) -> Verdict | None:
    stored = read_cache_file(path, key)
    try:
        return check.verdict(json.loads(stored)) if stored is not None else None
    except (ValueError, TypeError):  # written by another version of this code
        return None


def _guarded(
    model, choice: Choice, threads: int, check: PrecisionCheck | None
) -> tuple[Runtime, str]:
    """The bf16 runtime if it passes ``check`` (verdict kept on disk), else float32 (also when
    there is no check)."""
    if check is None:
        return (
            _runtime(model, choice.backend, "fp32", threads),
            "bf16 not used: no accuracy check was given",
        )
    path, key = _verdict_path(model, choice.backend, check.rule)
    verdict = _stored_verdict(path, key, check)
    if verdict is not None and not verdict.passed:
        return (
            _runtime(model, choice.backend, "fp32", threads),
            f"bf16 failed the accuracy check ({verdict.summary()})",
        )
    candidate = _runtime(model, choice.backend, "bf16", threads)
    if verdict is None:
        reference = _runtime(model, choice.backend, "fp32", threads)
        try:
            verdict = check.check(model, reference, candidate)
        except (OSError, ValueError) as error:  # e.g. the test data is not installed
            return reference, f"bf16 could not be checked ({str(error)[:120]})"
        write_cache_file(path, key, json.dumps(verdict.as_dict()).encode())
        if not verdict.passed:
            return reference, f"bf16 failed the accuracy check ({verdict.summary()})"
    return candidate, f"bf16 passed the accuracy check ({verdict.summary()})"


def prepare(
    model,
    backend: str = "auto",
    precision: str = "auto",
    threads: int = 1,
    log: Callable[[str], None] | None = None,
    check: PrecisionCheck | None = None,
) -> Runtime:
    """The runtime for ``model``: chosen (:func:`choose`), built or taken from the cache.

    A bf16 chosen automatically (``precision`` "auto") is kept only when it passes ``check``
    (e.g. ``accuracy_guard.GUARD``), else float32 runs; with no ``check`` float32 runs, and the
    log line says so. A precision given explicitly is used as asked, unchecked. Logs one line
    saying what was chosen and why (and, when something must be built first, one line saying
    so). A runtime that fails to build falls back to PyTorch unless ``backend`` asked for it.
    """
    say = log or logging.getLogger(__name__).info
    info = cpu.current()
    choice = choose(
        info.flags,
        installed_runtimes(),
        str(model.device).split(":")[0],
        model.spec.architecture,
        backend,
        precision,
    )
    started = time.perf_counter()
    seconds = _missing_seconds(model, choice, check)
    if seconds:
        say(f"Preparing the CPU runtime, once, about {seconds:.0f} s")
    try:
        runtime, note = (
            _guarded(model, choice, threads, check)
            if choice.guarded
            else (_runtime(model, choice.backend, choice.precision, threads), "")
        )
    except Exception as error:
        if backend != "auto":
            raise
        say(f"{choice.backend} unavailable ({str(error)[:200]}); using PyTorch.")
        choice = Choice("torch", "fp32", False, f"{choice.backend} failed")
        runtime, note = _runtime(model, "torch", "fp32", threads), ""
    flags = " ".join(info.relevant_flags) or "none of " + " ".join(cpu.RELEVANT_FLAGS)
    took = f"; prepared in {time.perf_counter() - started:.0f} s" if seconds else ""
    say(
        f"Runtime: {runtime.backend}, {runtime.precision} (CPU {info.model}, flags {flags}: "
        f"{choice.because}{'; ' + note if note else ''}{took})"
    )
    return runtime
