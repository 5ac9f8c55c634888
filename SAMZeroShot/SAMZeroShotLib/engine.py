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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from segment_anything.utils.onnx import SamOnnxModel
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
    logits: Optional[np.ndarray] = None  # rows x cols, float32, when asked for (to average views)


def default_precision(device: str) -> str:
    """float32 everywhere, unless the user asks for bf16/fp16.

    Measured on a 2-core AMD EPYC without AVX-512 (the CI kind of machine): bf16 autocast made the
    encoder 20-26x *slower* (52 s instead of 2 s per slice), since PyTorch falls back to scalar
    kernels there. Where bf16 is native (CUDA, AVX-512 BF16, AMX) it is an explicit option until
    its per-slice Dice has been checked on such hardware.
    """
    return "fp32"


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

#: Per thread: how many threads its ONNX Runtime calls use (set by :meth:`SamEngine.lane`).
_LANE = threading.local()


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


class PromptDecoder(SamOnnxModel):
    """Prompt encoder and mask decoder as one traceable module (segment_anything's ONNX model).

    Box corners are passed as points labelled 2 and 3, and a prompt without a box gets a padding
    point labelled -1, which is exactly what ``SamPredictor`` feeds the decoder. Returns the
    low-resolution logits of all mask tokens and their predicted IoU; choosing a token and
    resizing to the slice happen outside, so both runtimes share that code.
    """

    def __init__(self, model):
        super().__init__(model, return_single_mask=False)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        return self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)


class TorchDecoder:
    name = "torch"

    def __init__(self, model):
        self.module = PromptDecoder(model).eval()

    @torch.inference_mode()
    def __call__(self, features, coords, labels, masks, has_mask):
        return self.module(features, coords, labels, masks, has_mask)


class _OnnxPart:
    """One part of the model exported once to ONNX and run with ONNX Runtime (CPU, float32).

    On the CPU, ONNX Runtime fuses convolutions with their batch norms and GELUs into the matrix
    products: measured on 2 cores it runs LiteMedSAM's encoder 2.2x and its decoder 1.8x faster
    than PyTorch eager, with the same float32 results (largest difference about 1e-5). Exports
    are kept in the cache folder, keyed by checkpoint digest and torch version, and compared with
    PyTorch on a test input before first use.
    """

    name = "onnxruntime"
    #: Largest difference from PyTorch's output accepted when an export is checked.
    TOLERANCE = 1e-3

    def __init__(self, module, sample, names, outputs, dynamic_axes, path: Path, threads: int):
        self.names = names
        self.path = path
        self.threads = threads
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # A name of this process's own: workers of a cluster may export into one cache at once.
            partial = path.with_name(f"{path.name}.{os.getpid()}.part")
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(module, sample, str(partial), input_names=names, output_names=outputs,
                                  dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
            os.replace(partial, path)
        # One session per thread count: the engine's own, and the smaller one of its slice lanes.
        self._sessions = {threads: self._open(threads)}
        self._lock = threading.Lock()
        with torch.inference_mode():
            expected = module(*sample)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = self.run(*sample)
        for want, have in zip(expected, got):
            if tuple(have.shape) != tuple(want.shape) or float((have - want).abs().max()) > self.TOLERANCE:
                raise RuntimeError(f"the ONNX export {path.name} does not reproduce PyTorch's output")

    def _open(self, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        return onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def session(self):
        """The session for the calling thread's share of threads (sessions run concurrently)."""
        threads = getattr(_LANE, "threads", self.threads)
        session = self._sessions.get(threads)
        if session is None:
            with self._lock:
                session = self._sessions.get(threads)
                if session is None:
                    session = self._sessions[threads] = self._open(threads)
        return session

    def run(self, *inputs):
        feed = {name: value.numpy() for name, value in zip(self.names, inputs)}
        return tuple(torch.from_numpy(output) for output in self.session().run(None, feed))


class OnnxEncoder(_OnnxPart):
    def __init__(self, model, path: Path, threads: int):
        size = model.image_encoder.img_size
        sample = torch.linspace(-1.0, 1.0, 3 * size * size).reshape(1, 3, size, size)
        # The batch size is fixed to 1: TinyViT bakes it into reshapes when traced.
        super().__init__(model.image_encoder, (sample,), ["image"], ["features"], None, path, threads)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.run(batch[i:i + 1])[0] for i in range(len(batch))])


class OnnxDecoder(_OnnxPart):
    def __init__(self, model, path: Path, threads: int):
        module = PromptDecoder(model).eval()
        channels = model.prompt_encoder.embed_dim
        height, width = model.prompt_encoder.image_embedding_size
        mask_size = model.prompt_encoder.mask_input_size
        generator = torch.Generator().manual_seed(0)
        sample = (torch.randn(1, channels, height, width, generator=generator),
                  torch.tensor([[[10.0, 20.0], [120.0, 90.0], [60.0, 50.0]]] * 2),
                  torch.tensor([[2.0, 3.0, 1.0]] * 2),
                  torch.zeros(2, 1, *mask_size), torch.zeros(1))
        axes = {"point_coords": {0: "prompts", 1: "points"}, "point_labels": {0: "prompts", 1: "points"},
                "mask_input": {0: "prompts"}, "low_res_masks": {0: "prompts"}, "iou_predictions": {0: "prompts"}}
        super().__init__(module, sample, ["image_embeddings", "point_coords", "point_labels", "mask_input",
                                          "has_mask_input"], ["low_res_masks", "iou_predictions"], axes, path, threads)

    def __call__(self, features, coords, labels, masks, has_mask):
        return self.run(features, coords, labels, masks, has_mask)


def _onnx_usable() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def make_backends(model, backend: str, precision: str, threads: int, log=None):
    """``(encoder, decoder)``: ONNX Runtime for float32 on the CPU where installed, else PyTorch.

    A failed or inexact export falls back to PyTorch (with a log line) unless ``backend``
    insists on onnxruntime: an optimisation must never change results. ``threads``: the ONNX
    Runtime sessions' threads (lanes open smaller ones, see :meth:`SamEngine.lane`).
    """
    if backend not in BACKEND_NAMES:
        raise ValueError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}.")
    device = str(model.device)
    # auto: the built-in model only; SAM ViT-H's 2.5 GB of weights exceed ONNX's 2 GB file limit,
    # and the ViT models are meant for GPUs anyway.
    wants_onnx = backend == "onnxruntime" or (
        backend == "auto" and device == "cpu" and precision == "fp32" and model.spec.architecture == "litemedsam"
        and _onnx_usable())
    if not wants_onnx:
        return TorchEncoder(model, precision), TorchDecoder(model)
    if device != "cpu" or precision != "fp32":
        raise ValueError("The onnxruntime backend runs float32 on the CPU only.")
    from . import models

    spec = model.spec
    digest = spec.sha256 if spec.sha256 and model.checkpoint_verified else models.file_sha256(model.checkpoint)
    stem = f"{spec.architecture}-{digest[:16]}-torch{torch.__version__.split('+')[0]}"
    parts = []
    for kind, cls, fallback in (("encoder", OnnxEncoder, lambda: TorchEncoder(model, precision)),
                                ("decoder", OnnxDecoder, lambda: TorchDecoder(model))):
        path = models.cache_dir() / "onnx" / f"{stem}-{kind}.onnx"
        try:
            parts.append(cls(model, path, threads=threads))
        except Exception as error:
            if backend == "onnxruntime":
                raise
            if log:
                log(f"ONNX Runtime {kind} unavailable ({error}); using PyTorch.")
            path.unlink(missing_ok=True)
            parts.append(fallback())
    return tuple(parts)


class SamEngine:
    """Encodes slices and decodes prompts with one ``Sam`` model.

    ``precision`` applies autocast to the image encoder only (the decoder is cheap and stays
    float32). ``batch_size`` is how many slices go through the encoder at once (default 1 on
    a CPU, where batches of 4 were measured 40% slower per slice, and 8 on a GPU). ``backend`` picks the
    runtimes (:func:`make_backends`).

    ``workers``: how many slices a caller may segment at once, each in its own :meth:`lane`
    with an equal share of the threads. Default: 2 with ONNX Runtime on 2 or more cores, else 1.
    Measured on 2 cores: two one-thread ONNX Runtime sessions side by side encode a slice in
    0.885 s and decode a prompt in 51 ms, one two-thread session 0.947 s and 61 ms (its threads
    wait on each other between the many small operations). PyTorch's threads are shared by the
    whole process, so its engines keep one worker.
    """

    def __init__(self, model, precision: str = "auto", batch_size: Optional[int] = None,
                 cache: Optional[EmbeddingCache] = None, backend: str = "auto", log=None,
                 workers: Optional[int] = None):
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
        self._count_lock = threading.Lock()
        self.threads = torch.get_num_threads()
        self.encoder, self.decoder = make_backends(model, backend, self.precision, self.threads, log=log)
        self.backend = self.encoder.name if self.encoder.name == self.decoder.name else \
            f"{self.encoder.name} encoder, {self.decoder.name} decoder"
        if workers is None:
            workers = 2 if self.backend == "onnxruntime" and self.threads >= 2 else 1
        self.workers = max(1, int(workers))

    @contextmanager
    def lane(self):
        """Within this block the calling thread's model calls use ``threads // workers`` threads,
        so that ``workers`` threads can each segment a slice at the same time."""
        _LANE.threads = max(1, self.threads // self.workers)
        try:
            yield
        finally:
            del _LANE.threads

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
        with self._count_lock:
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
               mask_inputs: Optional[Sequence[Optional[np.ndarray]]] = None, logits: bool = False) -> List[Prediction]:
        """Masks for ``prompts`` on one slice; prompts of the same shape share one decoder call.

        ``mask_inputs`` optionally gives each prompt a 1 x 256 x 256 low-resolution logit mask
        (a previous :class:`Prediction`'s ``low_res_logits``). ``logits`` also returns the
        full-resolution logits (mask = logits > 0).
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
                    multimask, logits)):
                results[index] = prediction
        return results

    def _sparse_inputs(self, prompts: Sequence[Prompt], original_size) -> Tuple[torch.Tensor, torch.Tensor]:
        """Points and box corners of same-shaped prompts, in the model's input frame."""
        coords, labels = [], []
        for prompt in prompts:
            points = [] if prompt.points is None else [self.transform.apply_coords(prompt.points, original_size)]
            kinds = [] if prompt.labels is None else [prompt.labels.astype(np.float32)]
            if prompt.box is not None:
                points.append(self.transform.apply_boxes(prompt.box[None], original_size).reshape(2, 2))
                kinds.append(np.array([2.0, 3.0], np.float32))
            else:  # SamPredictor pads a prompt without a box with one "not a point"
                points.append(np.zeros((1, 2), np.float32))
                kinds.append(np.array([-1.0], np.float32))
            coords.append(np.concatenate(points).astype(np.float32))
            labels.append(np.concatenate(kinds))
        return torch.from_numpy(np.stack(coords)), torch.from_numpy(np.stack(labels))

    def _decode_group(self, embedding, prompts, mask_inputs, multimask, want_logits):
        coords, labels = self._sparse_inputs(prompts, embedding.original_size)
        mask_size = self.model.prompt_encoder.mask_input_size
        if mask_inputs is not None:
            masks, has_mask = torch.from_numpy(np.stack(mask_inputs).astype(np.float32)), torch.ones(1)
        else:
            masks, has_mask = torch.zeros(len(prompts), 1, *mask_size), torch.zeros(1)
        device = self.device
        low_res, scores = self.decoder(embedding.features.to(device), coords.to(device), labels.to(device),
                                       masks.to(device), has_mask.to(device))
        if multimask:
            # SAM's advice for ambiguous prompts: of the three multimask outputs, keep the one with
            # the best predicted IoU.
            best = 1 + scores[:, 1:].argmax(dim=1)
        else:
            best = torch.zeros(len(prompts), dtype=torch.long, device=scores.device)
        rows = torch.arange(len(prompts), device=scores.device)
        low_res, scores = low_res[rows, best][:, None], scores[rows, best][:, None]
        with torch.inference_mode():
            full = self.model.postprocess_masks(low_res.to(device), embedding.input_size, embedding.original_size)
        full_logits = (full - self.model.mask_threshold).float().cpu().numpy()
        low_res = low_res.float().cpu().numpy()
        scores = scores.float().cpu().numpy()
        return [Prediction(full_logits[i, 0] > 0, float(scores[i, 0]), low_res[i],
                           full_logits[i, 0] if want_logits else None) for i in range(len(prompts))]
