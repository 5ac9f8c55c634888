"""The model's two parts as exported: their specs and test inputs, the ONNX export and the
models OpenVINO compiles from it, each checked against PyTorch before it is kept on disk.

On disk (:func:`runtime_files.runtimes_dir`) the ONNX files are keyed by checkpoint digest and
torch version, OpenVINO's compiled models also by OpenVINO version and CPU kind (a compiled model
is not portable between CPUs).
"""

from __future__ import annotations

import io
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cpu
from .cpu_parts import OPENVINO_TYPES, OnnxRuntimePart, OpenVinoPart
from .quiet import exporters_quiet
from .runtime_choice import installed_runtimes
from .runtime_files import cached, model_stem, runtime_version, runtimes_dir, torch_version
from .torch_parts import PromptDecoder


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


def export_onnx(spec: PartSpec) -> bytes:
    """The part as an ONNX file's bytes (TorchScript exporter, opset 17).

    The exporters' warnings are silenced through their own loggers (:mod:`quiet`): the result is
    checked against PyTorch instead.
    """
    with tempfile.TemporaryDirectory(prefix="samzeroshot-export-") as folder, exporters_quiet():
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


def onnx_path(model, kind: str) -> tuple[Path, str]:
    """Where a part's ONNX export is kept, and its cache key."""
    path = runtimes_dir() / f"onnx-torch{torch_version()}" / f"{model_stem(model)}-{kind}.onnx"
    return path, f"{path.name} torch {torch_version()}"


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


def openvino_path(model, kind: str, precision: str) -> tuple[Path, str]:
    """Where a part compiled by OpenVINO for this kind of CPU is kept, and its cache key."""
    info = cpu.current()
    version = runtime_version("openvino")
    path = (
        runtimes_dir()
        / f"openvino-{version}"
        / info.key()
        / f"{model_stem(model)}-torch{torch_version()}-{kind}-{precision}.blob"
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
        with exporters_quiet():
            source = core.read_model(stream)
            compiled = core.compile_model(
                source, "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_TYPES[precision]}
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
