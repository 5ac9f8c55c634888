"""SAM inference: image embeddings per slice (batched, cached) and many prompts per embedding.

The contract mirrors ``segment_anything.SamPredictor`` (same resize, normalisation, padding and
mask post-processing, so results match it) but encodes several slices per encoder call, decodes
all prompts of a slice in one decoder call per prompt shape, and keeps embeddings in a cache
keyed by the exact image bytes and model, so re-running with other prompts skips the encoder.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from .parameters import PRECISION_NAMES
from .prompts import Prompt

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Embedding:
    """The encoder's output for one slice, with the sizes needed to map masks back."""

    features: torch.Tensor  # 1 x C x h x w, float32
    original_size: Tuple[int, int]  # (rows, cols) of the slice
    input_size: Tuple[int, int]  # (rows, cols) after ResizeLongestSide


@dataclass
class Prediction:
    """What one prompt produced."""

    mask: np.ndarray  # rows x cols, bool
    score: float  # the decoder's predicted IoU
    low_res_logits: np.ndarray  # 1 x 256 x 256, float32: feeds a later prompt's mask input


def default_precision(device: str) -> str:
    """bf16 where the hardware does it natively (CUDA, CPUs with AVX-512 BF16 or AMX), else fp32.

    Chosen from measurements (see README, Speed): on such CPUs bf16 encodes about twice as fast
    and changes no per-slice Dice by more than 0.005.
    """
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and _cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class EmbeddingCache:
    """Image embeddings kept in memory (least recently used out first) and optionally on disk.

    Keys hash the model, the precision and the exact 8-bit image, so the volume content, slice
    and window are all part of the key without being named.
    """

    def __init__(self, max_bytes: int = 2 << 30, directory: Optional[os.PathLike] = None):
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory else None
        self._items: "OrderedDict[str, Embedding]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, precision: str, image: np.ndarray) -> str:
        digest = hashlib.sha256(f"{model_id}|{precision}|{image.shape}".encode())
        digest.update(np.ascontiguousarray(image).data)
        return digest.hexdigest()

    def get(self, key: str) -> Optional[Embedding]:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
        if item is None and self.directory is not None:
            path = self.directory / f"{key}.pt"
            if path.is_file():
                stored = torch.load(path, map_location="cpu", weights_only=True)
                item = Embedding(stored["features"], tuple(stored["original_size"]), tuple(stored["input_size"]))
                self._remember(key, item)
        if item is None:
            self.misses += 1
        else:
            self.hits += 1
        return item

    def put(self, key: str, item: Embedding) -> None:
        self._remember(key, item)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.directory / f"{key}.pt.part"
            torch.save({"features": item.features, "original_size": list(item.original_size),
                        "input_size": list(item.input_size)}, partial)
            os.replace(partial, self.directory / f"{key}.pt")

    def _remember(self, key: str, item: Embedding) -> None:
        size = item.features.numel() * item.features.element_size()
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.features.numel() * old.features.element_size()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


BACKEND_NAMES = ("auto", "torch", "onnxruntime")


class TorchEncoder:
    """The model's own image encoder, with optional autocast."""

    name = "torch"

    def __init__(self, model, precision: str):
        self.encoder = model.image_encoder
        self.device_type = str(model.device).split(":")[0]
        self.dtype = _AUTOCAST_DTYPES.get(precision)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.dtype is None:
            return self.encoder(batch)
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.encoder(batch).float()


class OnnxEncoder:
    """The image encoder exported once to ONNX and run with ONNX Runtime (CPU, float32).

    On the CPU, ONNX Runtime fuses the convolutions with their batch norms and the GELUs into
    the matrix products; measured on 2 cores it runs LiteMedSAM's encoder 2.2x faster than
    PyTorch eager with the same float32 results (largest difference about 1e-6). The export is
    kept in the cache folder, keyed by checkpoint digest and torch version, and checked against
    PyTorch on a test input before first use.
    """

    name = "onnxruntime"
    #: Largest difference from PyTorch's features accepted when an export is checked.
    TOLERANCE = 1e-3

    def __init__(self, model, path: Path, threads: int):
        import onnxruntime

        if not path.is_file():
            self.export(model, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self._check(model)

    @staticmethod
    def export(model, path: Path) -> None:
        size = model.image_encoder.img_size
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with torch.inference_mode(False), torch.no_grad():
            # The batch size is fixed to 1: TinyViT bakes it into reshapes when traced.
            torch.onnx.export(model.image_encoder, (torch.zeros(1, 3, size, size),), str(partial),
                              input_names=["image"], output_names=["features"], opset_version=17, dynamo=False)
        os.replace(partial, path)

    def _check(self, model) -> None:
        size = model.image_encoder.img_size
        sample = torch.linspace(-1.0, 1.0, 3 * size * size).reshape(1, 3, size, size)
        with torch.inference_mode():
            expected = model.image_encoder(sample).numpy()
        got = self.session.run(None, {self.input_name: sample.numpy()})[0]
        if got.shape != expected.shape or float(np.abs(got - expected).max()) > self.TOLERANCE:
            raise RuntimeError("The ONNX export of the image encoder does not reproduce PyTorch's output.")

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        outputs = [self.session.run(None, {self.input_name: batch[i:i + 1].numpy()})[0] for i in range(len(batch))]
        return torch.from_numpy(np.concatenate(outputs))


def _onnx_usable() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def make_encoder(model, backend: str, precision: str, log=None):
    """The encoder backend: ONNX Runtime for float32 on the CPU where installed, else PyTorch."""
    if backend not in BACKEND_NAMES:
        raise ValueError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}.")
    device = str(model.device)
    wants_onnx = backend == "onnxruntime" or (
        backend == "auto" and device == "cpu" and precision == "fp32" and _onnx_usable())
    if wants_onnx:
        if device != "cpu" or precision != "fp32":
            raise ValueError("The onnxruntime backend runs float32 on the CPU only.")
        from . import models

        spec = getattr(model, "spec", None)
        digest = (spec.sha256 if spec is not None and spec.sha256 and model.checkpoint_verified
                  else models.file_sha256(model.checkpoint))
        path = models.cache_dir() / "onnx" / f"{spec.architecture}-{digest[:16]}-torch{torch.__version__.split('+')[0]}.onnx"
        try:
            return OnnxEncoder(model, path, threads=torch.get_num_threads())
        except Exception as error:  # an export that fails or differs must never change results
            if backend == "onnxruntime":
                raise
            if log:
                log(f"ONNX Runtime encoder unavailable ({error}); using PyTorch.")
            path.unlink(missing_ok=True)
    return TorchEncoder(model, precision)


class SamEngine:
    """Encodes slices and decodes prompts with one ``Sam`` model.

    ``precision`` applies autocast to the image encoder only (the decoder is cheap and stays
    float32). ``batch_size`` is how many slices go through the encoder at once (default 1 on
    a CPU, where batches of 4 were measured 40% slower per slice, and 8 on a GPU). ``backend`` picks the encoder's
    runtime (:func:`make_encoder`).
    """

    def __init__(self, model, precision: str = "auto", batch_size: Optional[int] = None,
                 cache: Optional[EmbeddingCache] = None, backend: str = "auto", log=None):
        self.model = model
        self.device = str(model.device)
        self.precision = default_precision(self.device.split(":")[0]) if precision == "auto" else precision
        if self.precision not in PRECISION_NAMES[1:]:
            raise ValueError(f"Unknown precision {precision!r}: choose one of {', '.join(PRECISION_NAMES)}.")
        self.batch_size = max(1, int(batch_size or (8 if self.device.startswith("cuda") else 1)))
        self.cache = cache
        self.image_size = model.image_encoder.img_size
        self.transform = ResizeLongestSide(self.image_size)
        self.model_id = f"{getattr(model, 'spec', None) and model.spec.name}:{getattr(model, 'checkpoint', '')}"
        self.encoded_slices = 0  # slices that went through the encoder (cache misses)
        self.encoder = make_encoder(model, backend, self.precision, log=log)
        self.backend = self.encoder.name

    # -- encoder -----------------------------------------------------------------------------
    def _prepare(self, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Resize (as SamPredictor.set_image does), normalise and pad one uint8 RGB image."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}.")
        resized = self.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.model.preprocess(tensor.float()), tuple(resized.shape[:2])

    @torch.inference_mode()
    def _encode_batch(self, images: Sequence[np.ndarray]) -> List[Embedding]:
        prepared = [self._prepare(image) for image in images]
        batch = torch.cat([tensor for tensor, _ in prepared])
        features = self.encoder(batch).float()
        self.encoded_slices += len(images)
        return [Embedding(features[i:i + 1].clone(), tuple(image.shape[:2]), input_size)
                for i, (image, (_, input_size)) in enumerate(zip(images, prepared))]

    def encode(self, images: Sequence[np.ndarray]) -> List[Embedding]:
        """Embeddings of uint8 RGB images, from the cache where possible, the rest in batches."""
        results: List[Optional[Embedding]] = [None] * len(images)
        keys = [None] * len(images)
        todo = []
        for index, image in enumerate(images):
            if self.cache is not None:
                keys[index] = EmbeddingCache.key(self.model_id, self.precision, image)
                results[index] = self.cache.get(keys[index])
            if results[index] is None:
                todo.append(index)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for index, embedding in zip(chunk, self._encode_batch([images[i] for i in chunk])):
                results[index] = embedding
                if self.cache is not None:
                    self.cache.put(keys[index], embedding)
        return results

    # -- decoder -----------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, embedding: Embedding, prompts: Sequence[Prompt],
               mask_inputs: Optional[Sequence[Optional[np.ndarray]]] = None) -> List[Prediction]:
        """Masks for ``prompts`` on one slice; prompts of the same shape share one decoder call.

        ``mask_inputs`` optionally gives each prompt a 1 x 256 x 256 low-resolution logit mask
        (a previous :class:`Prediction`'s ``low_res_logits``).
        """
        mask_inputs = list(mask_inputs) if mask_inputs is not None else [None] * len(prompts)
        groups: Dict[tuple, List[int]] = {}
        for index, prompt in enumerate(prompts):
            shape = (None if prompt.points is None else len(prompt.points), prompt.box is not None,
                     mask_inputs[index] is not None, prompt.multimask)
            groups.setdefault(shape, []).append(index)
        results: List[Optional[Prediction]] = [None] * len(prompts)
        for (n_points, has_box, has_mask, multimask), indices in groups.items():
            for index, prediction in zip(indices, self._decode_group(
                    embedding, [prompts[i] for i in indices], [mask_inputs[i] for i in indices] if has_mask else None,
                    n_points is not None, has_box, multimask)):
                results[index] = prediction
        return results

    def _decode_group(self, embedding, prompts, mask_inputs, has_points, has_box, multimask):
        device = self.device
        points = boxes = masks = None
        if has_points:
            coords = np.stack([self.transform.apply_coords(p.points, embedding.original_size) for p in prompts])
            labels = np.stack([p.labels for p in prompts])
            points = (torch.as_tensor(coords, dtype=torch.float, device=device),
                      torch.as_tensor(labels, dtype=torch.int, device=device))
        if has_box:
            boxes = np.stack([self.transform.apply_boxes(p.box[None], embedding.original_size)[0] for p in prompts])
            boxes = torch.as_tensor(boxes, dtype=torch.float, device=device)
        if mask_inputs is not None:
            masks = torch.as_tensor(np.stack(mask_inputs), dtype=torch.float, device=device)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        low_res, scores = self.model.mask_decoder(
            image_embeddings=embedding.features.to(device),
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        if multimask:
            # SAM's advice for ambiguous prompts: keep the mask with the best predicted IoU.
            best = scores.argmax(dim=1)
            rows = torch.arange(len(prompts), device=best.device)
            low_res, scores = low_res[rows, best][:, None], scores[rows, best][:, None]
        full = self.model.postprocess_masks(low_res, embedding.input_size, embedding.original_size)
        full = (full > self.model.mask_threshold).cpu().numpy()
        low_res = low_res.float().cpu().numpy()
        scores = scores.float().cpu().numpy()
        return [Prediction(full[i, 0], float(scores[i, 0]), low_res[i]) for i in range(len(prompts))]
