"""The runtimes that run a SAM model's two parts (image encoder, prompt decoder), the choice
among them, and their exports and compiled models kept on disk.

- ``torch``: the model itself, on any device, optionally under autocast.
- ``onnxruntime``: the parts exported once to ONNX and run by ONNX Runtime (CPU, float32).
- ``openvino``: the same ONNX files compiled by OpenVINO for this CPU, in float32 or bf16.

:func:`choose` decides from the CPU's flags and what is installed (the measured reasons are in its
docstring); :func:`prepare` builds the choice: every new export or compiled model is compared
with PyTorch on a test input before it is kept, and a bf16 chosen automatically is kept only when
it passes the precision check its caller hands in (the accuracy guard, :mod:`accuracy_guard`, from
the engine's builder), whose verdict is kept too; with no check it is not used.

On disk (``<cache>/runtimes``) the ONNX files are keyed by checkpoint digest and torch version,
OpenVINO's compiled models and the guard's verdicts also by OpenVINO version and CPU kind (a
compiled model is not portable between CPUs). Each file starts with one line holding its key and
the SHA-256 of the rest; a file whose key or digest does not match is rebuilt, never used. Files
are written under a temporary name and renamed, so processes preparing at once never see (or
leave) a half-written file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from segment_anything.utils.onnx import SamOnnxModel

from . import cpu
from .errors import SettingError
from .parameters import BACKEND_NAMES
from .quiet import exporters_quiet

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

_OPENVINO_TYPES = {"fp32": "f32", "bf16": "bf16"}


# -- PyTorch ---------------------------------------------------------------------------------
class TorchEncoder:
    """The model's own image encoder, with optional autocast.

    Like every runtime part, it is called with the part's inputs and ``threads``, the calling
    lane's thread count (None: the part's own); PyTorch's threads are shared by the whole
    process, so its parts ignore it.
    """

    name = "torch"

    def __init__(self, model, precision: str):
        self.encoder = model.image_encoder
        self.device_type = str(model.device).split(":")[0]
        self.dtype = _AUTOCAST_DTYPES.get(precision)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        if self.dtype is None:
            return self.encoder(batch)
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.encoder(batch).float()


class PromptDecoder(SamOnnxModel):
    """Prompt encoder and mask decoder as one traceable module (segment_anything's ONNX model).

    Box corners are passed as points labelled 2 and 3, and a prompt without a box gets a padding
    point labelled -1, which is exactly what ``SamPredictor`` feeds the decoder. Returns the
    low-resolution logits of all mask tokens and their predicted IoU; choosing a token and
    resizing to the slice happen outside, so all runtimes share that code.
    """

    def __init__(self, model):
        super().__init__(model, return_single_mask=False)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        return self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )


class TorchDecoder:
    name = "torch"

    def __init__(self, model):
        self.module = PromptDecoder(model).eval()

    @torch.inference_mode()
    def __call__(self, features, coords, labels, masks, has_mask, threads: int | None = None):
        return self.module(features, coords, labels, masks, has_mask)


# -- the two parts, as exported ----------------------------------------------------------------
@dataclass
class PartSpec:
    """One part of the model as it is exported: module, a test input, input and output names."""

    kind: str  # "encoder" or "decoder"
    module: torch.nn.Module
    sample: tuple[torch.Tensor, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict | None = None

    owner: torch.nn.Module | None = None  # the model's own part: PyTorch's output kept per owner

    @torch.inference_mode()
    def expected(self) -> tuple[torch.Tensor, ...]:
        """PyTorch's output on the test input, computed once per owner (a first run checks
        several exports and compiled models of the same part against it)."""
        key = self.owner if self.owner is not None else self.module
        if key not in _EXPECTED:
            result = self.module(*self.sample)
            _EXPECTED[key] = result if isinstance(result, tuple) else (result,)
        return _EXPECTED[key]


#: PyTorch's outputs of each part on its test input, forgotten with the model.
_EXPECTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encoder_spec(model) -> PartSpec:
    size = model.image_encoder.img_size
    sample = torch.linspace(-1.0, 1.0, 3 * size * size).reshape(1, 3, size, size)
    # The batch size is fixed to 1: TinyViT bakes it into reshapes when traced.
    return PartSpec(
        "encoder",
        model.image_encoder,
        (sample,),
        ("image",),
        ("features",),
        owner=model.image_encoder,
    )


def decoder_spec(model) -> PartSpec:
    channels = model.prompt_encoder.embed_dim
    height, width = model.prompt_encoder.image_embedding_size
    generator = torch.Generator().manual_seed(0)
    sample = (
        torch.randn(1, channels, height, width, generator=generator),
        torch.tensor([[[10.0, 20.0], [120.0, 90.0], [60.0, 50.0]]] * 2),
        torch.tensor([[2.0, 3.0, 1.0]] * 2),
        torch.zeros(2, 1, *model.prompt_encoder.mask_input_size),
        torch.zeros(1),
    )
    axes = {
        "point_coords": {0: "prompts", 1: "points"},
        "point_labels": {0: "prompts", 1: "points"},
        "mask_input": {0: "prompts"},
        "low_res_masks": {0: "prompts"},
        "iou_predictions": {0: "prompts"},
    }
    return PartSpec(
        "decoder",
        PromptDecoder(model).eval(),
        sample,
        ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"),
        ("low_res_masks", "iou_predictions"),
        axes,
        owner=model.mask_decoder,
    )


#: Largest difference from PyTorch's float32 output accepted for a float32 export.
FP32_TOLERANCE = 1e-3
#: Largest relative (L2) difference from PyTorch's output accepted for a bf16 compiled model: a
#: check that it computes the same function, not of its accuracy (the guard judges masks).
#: Measured on the test inputs: encoder 0.012, decoder 0.01.
BF16_RELATIVE_TOLERANCE = 0.1


def check_outputs(spec: PartSpec, got: Sequence[torch.Tensor], precision: str, what: str) -> None:
    """Raise RuntimeError unless ``got`` reproduces PyTorch's output on the part's test input."""
    for want, have in zip(spec.expected(), got, strict=True):
        if tuple(have.shape) != tuple(want.shape):
            raise RuntimeError(
                f"{what} gives shape {tuple(have.shape)}, PyTorch {tuple(want.shape)}"
            )
        if precision == "fp32":
            error, limit = float((have - want).abs().max()), FP32_TOLERANCE
        else:
            error = float(
                torch.linalg.vector_norm(have - want)
                / torch.linalg.vector_norm(want).clamp_min(1e-12)
            )
            limit = BF16_RELATIVE_TOLERANCE
        if not error <= limit:
            raise RuntimeError(
                f"{what} does not reproduce PyTorch's output (difference {error:.3g} > {limit})"
            )


#: Silences the exporters' and runtimes' warnings (tracer notes, constant folding, ...) through
#: their own loggers and warning filters only (:mod:`quiet`): the exported result is checked
#: against PyTorch instead, and users get one line in their place.
_quiet = exporters_quiet


def export_onnx(spec: PartSpec) -> bytes:
    """The part as an ONNX file's bytes (TorchScript exporter, opset 17)."""
    with tempfile.TemporaryDirectory(prefix="samzeroshot-export-") as folder, _quiet():
        path = Path(folder) / f"{spec.kind}.onnx"
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                spec.module,
                spec.sample,
                str(path),
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_axes=spec.dynamic_axes,
                opset_version=17,
                dynamo=False,
            )
        return path.read_bytes()


# -- cache files ----------------------------------------------------------------------------
_MAGIC = b"SAMZeroShot cache v1 "


def write_cache_file(path: Path, key: str, payload: bytes) -> None:
    """Write ``payload`` under a header with ``key`` and its SHA-256, atomically (temporary
    name in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b" " + key.encode() + b"\n"
    handle, partial = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(header)
            out.write(payload)
        os.chmod(partial, 0o644)  # mkstemp makes it private; cached models are not secrets
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def read_cache_file(path: Path, key: str) -> bytes | None:
    """The payload of a cache file, or None when it is missing, made for another key (stale) or
    not what was written (corrupt or cut short)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header, newline, payload = data.partition(b"\n")
    if not newline or not header.startswith(_MAGIC):
        return None
    digest, _, stored_key = header[len(_MAGIC) :].decode(errors="replace").partition(" ")
    if stored_key != key or hashlib.sha256(payload).hexdigest() != digest:
        return None
    return payload


def cached(path: Path, key: str, build: Callable[[], bytes]) -> tuple[bytes, bool]:
    """``(payload, built)``: the cache file's payload when intact, else ``build()``'s, written."""
    payload = read_cache_file(path, key)
    if payload is not None:
        return payload, False
    payload = build()
    write_cache_file(path, key, payload)
    return payload, True


def _version(backend: str) -> str:
    """A runtime's version, e.g. "2026.4.1" (without build suffixes)."""
    module = importlib.import_module(backend)
    return module.__version__.split("+")[0].split("-")[0]


def runtimes_dir() -> Path:
    from . import models

    return models.cache_dir() / "runtimes"


def model_stem(model) -> str:
    """Names the checkpoint: architecture and the start of its SHA-256."""
    from . import models

    spec = model.spec
    digest = (
        spec.sha256
        if spec.sha256 and model.checkpoint_verified
        else models.file_sha256(model.checkpoint)
    )
    return f"{spec.architecture}-{digest[:16]}"


def _torch_version() -> str:
    return torch.__version__.split("+")[0]


def onnx_path(model, kind: str) -> tuple[Path, str]:
    """Where a part's ONNX export is kept, and its cache key."""
    path = runtimes_dir() / f"onnx-torch{_torch_version()}" / f"{model_stem(model)}-{kind}.onnx"
    return path, f"{path.name} torch {_torch_version()}"


def onnx_file(model, spec: PartSpec) -> tuple[bytes, bool]:
    """The part's ONNX export, from the cache or exported now (and checked with ONNX Runtime)."""

    def build() -> bytes:
        payload = export_onnx(spec)
        if "onnxruntime" in installed_runtimes():  # else OpenVINO checks what it compiles from it
            check_outputs(
                spec,
                OnnxRuntimePart(payload, spec.inputs, torch.get_num_threads()).run(*spec.sample),
                "fp32",
                f"the ONNX export of the {spec.kind}",
            )
        return payload

    return cached(*onnx_path(model, spec.kind), build)


# -- ONNX Runtime and OpenVINO, one part each -----------------------------------------------
class _LanedPart:
    """One model part in a CPU runtime, opened once per thread count: the engine's own
    (``threads``), and the smaller one of its slice lanes (lanes run concurrently, each with its
    own copy). Calls name the thread count they run with (None: the part's own)."""

    def __init__(self, inputs: Sequence[str], threads: int):
        self.inputs = tuple(inputs)
        self.threads = threads
        self._opened: dict[int, object] = {}
        self._lock = threading.Lock()

    def _open(self, threads: int):
        raise NotImplementedError

    def opened(self, threads: int | None = None):
        threads = threads or self.threads
        item = self._opened.get(threads)
        if item is None:
            with self._lock:
                item = self._opened.get(threads)
                if item is None:
                    item = self._opened[threads] = self._open(threads)
        return item

    def run(self, *inputs: torch.Tensor, threads: int | None = None) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class OnnxRuntimePart(_LanedPart):
    """On the CPU ONNX Runtime fuses convolutions with their batch norms and GELUs into the matrix
    products: measured on 2 cores (AMD EPYC, AVX2) it ran LiteMedSAM's encoder 2.2x and its
    decoder 1.8x faster than PyTorch eager, float32 results within 1e-5."""

    name = "onnxruntime"

    def __init__(self, payload: bytes, inputs: Sequence[str], threads: int):
        super().__init__(inputs, threads)
        self.payload = payload
        self.opened()

    def _open(self, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its notes on unused initialisers are noise
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        return onnxruntime.InferenceSession(
            self.payload, options, providers=["CPUExecutionProvider"]
        )

    def run(self, *inputs, threads=None):
        feed = {name: value.numpy() for name, value in zip(self.inputs, inputs, strict=True)}
        return tuple(torch.from_numpy(output) for output in self.opened(threads).run(None, feed))


class OpenVinoPart(_LanedPart):
    """A model part compiled by OpenVINO for this CPU (the compiled blob, imported once per
    thread count); each calling thread gets its own infer request."""

    name = "openvino"

    def __init__(self, blob: bytes, inputs: Sequence[str], threads: int, precision: str):
        super().__init__(inputs, threads)
        self.blob = blob
        self.precision = precision
        self._requests = threading.local()
        self.opened()

    def _open(self, threads: int):
        import openvino

        # The precision must be given again: a float32 blob imported without it on a CPU whose
        # default is bf16 computes NaNs (OpenVINO 2026.4). The imported model may point into
        # the blob's buffer, which therefore lives as long as this part.
        # OpenVINO runs one request per stream: lanes sharing a one-stream model wait for each
        # other (LiteMedSAM's fp32 encoder, Intel Xeon with AMX: two 1-thread lanes 1.11 s per
        # slice, one 2-thread stream 0.50 s, two 1-thread streams 0.485 s). So a lane of
        # ``threads`` gets a model with one stream per lane, sharing the part's threads.
        streams = max(1, self.threads // threads)
        config = {
            "INFERENCE_NUM_THREADS": max(threads, self.threads) if streams > 1 else threads,
            "NUM_STREAMS": streams,
            "INFERENCE_PRECISION_HINT": _OPENVINO_TYPES[self.precision],
        }
        return openvino.Core().import_model(self.blob, "CPU", config)

    def run(self, *inputs, threads=None):
        compiled = self.opened(threads)
        requests = self._requests.__dict__.setdefault("by_model", {})
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        outputs = request.infer([value.numpy() for value in inputs], share_inputs=True)
        return tuple(
            torch.from_numpy(np.array(outputs[port], copy=True)) for port in compiled.outputs
        )


class PartCall:
    """A runtime part called like the PyTorch parts: tensors in, tensors out."""

    def __init__(self, part: _LanedPart, kind: str, precision: str):
        self.part = part
        self.name = part.name
        self.kind = kind
        self.precision = precision

    def __call__(self, *inputs: torch.Tensor, threads: int | None = None):
        if self.kind == "decoder":
            return self.part.run(*inputs, threads=threads)
        # The encoder's batch size is fixed to 1 (see encoder_spec).
        batch = inputs[0]
        return torch.cat(
            [self.part.run(batch[i : i + 1], threads=threads)[0] for i in range(len(batch))]
        )


def openvino_path(model, kind: str, precision: str) -> tuple[Path, str]:
    """Where a part compiled by OpenVINO for this kind of CPU is kept, and its cache key."""
    info = cpu.current()
    version = _version("openvino")
    path = (
        runtimes_dir()
        / f"openvino-{version}"
        / info.key()
        / f"{model_stem(model)}-torch{_torch_version()}-{kind}-{precision}.blob"
    )
    return path, f"{path.name} openvino {version} {info.model} {' '.join(info.relevant_flags)}"


def openvino_blob(model, spec: PartSpec, onnx_payload: bytes, precision: str) -> tuple[bytes, bool]:
    """The part compiled by OpenVINO for this CPU in ``precision``, from the cache or compiled
    now (and checked against PyTorch)."""
    import openvino

    def build() -> bytes:
        core = openvino.Core()
        # The model read may point into the stream's buffer: the stream lives until compiled.
        stream = io.BytesIO(onnx_payload)
        with _quiet():
            source = core.read_model(stream)
            compiled = core.compile_model(
                source, "CPU", {"INFERENCE_PRECISION_HINT": _OPENVINO_TYPES[precision]}
            )
        blob = compiled.export_model().getvalue()
        del compiled, source, stream
        check_outputs(
            spec,
            OpenVinoPart(blob, spec.inputs, torch.get_num_threads(), precision).run(*spec.sample),
            precision,
            f"OpenVINO's {precision} {spec.kind}",
        )
        return blob

    return cached(*openvino_path(model, spec.kind, precision), build)


# -- the choice -----------------------------------------------------------------------------
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


def choose(
    flags: Iterable[str],
    installed: Iterable[str],
    device: str = "cpu",
    architecture: str = "litemedsam",
    backend: str = "auto",
    precision: str = "auto",
) -> Choice:
    """The backend and precision for a model, from the CPU's flags and the installed runtimes.

    Measured with LiteMedSAM's encoder, 2 threads: on an Intel Xeon with AVX-512 and AMX, PyTorch
    1.24 s per slice, ONNX Runtime 0.64 s, OpenVINO 0.44 s in float32 and 0.19 s in bf16 (its AMX
    units multiply bf16 matrices at 1,300 GFLOP/s against 280 in float32); on an AMD EPYC with
    AVX2 only, OpenVINO equalled ONNX Runtime in float32 and bf16 was 40x slower (emulated). So:
    OpenVINO where the CPU has AVX-512, else ONNX Runtime (else PyTorch), and bf16 only for the
    built-in model, only where the CPU multiplies bf16 natively (``amx_bf16`` or ``avx512_bf16``),
    and only after it passes the accuracy guard. ``backend``/``precision`` other than "auto" are
    taken as given (and refused when that runtime cannot run that precision or is missing).
    """
    flags, installed = frozenset(flags), frozenset(installed)
    if backend not in BACKEND_NAMES:
        raise SettingError(
            f"Unknown backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}."
        )
    if precision not in ("auto",) + PRECISIONS:
        raise SettingError(
            f"Unknown precision {precision!r}: choose one of auto, {', '.join(PRECISIONS)}."
        )
    if backend == "auto":
        backend, because = _auto_backend(flags, installed, device, architecture)
    else:
        because = "as asked"
        if backend != "torch" and device != "cpu":
            raise SettingError(f"The {backend} backend runs on the CPU only (device is {device}).")
        if backend != "torch" and backend not in installed:
            raise SettingError(
                f"The {backend} backend is not installed: pip install {backend} onnx."
            )
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


# -- preparing the choice -------------------------------------------------------------------
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
        / f"{backend}-{_version(backend)}"
        / info.key()
        / f"{model_stem(model)}-bf16-verdict.json"
    )
    return (
        path,
        f"{path.name} {rule} encoder-only {backend} {_version(backend)} {info.model} "
        f"{' '.join(info.relevant_flags)}",
    )


def part_runtimes(backend: str, precision: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """``((runtime, precision), (runtime, precision))`` of the encoder and the decoder.

    Reduced precision is for the encoder only (where the time goes): with the decoder in bf16
    too, one mask of the guard's 54 lost 0.069 of Dice against the reference, with the decoder in
    float32 at most 0.048 (AMD EPYC, AVX-512 BF16). OpenVINO's float32 decoder was slower than
    ONNX Runtime's, so a float32 decoder runs on ONNX Runtime where it is installed.
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
