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
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from . import files, runtimes
from .prompts import Prompt


@dataclass
class Embedding:
    """The encoder's output for one slice, with the sizes needed to map masks back."""

    features: torch.Tensor  # 1 x C x h x w, float32
    original_size: tuple[int, int]  # (rows, cols) of the slice
    input_size: tuple[int, int]  # (rows, cols) after ResizeLongestSide


@dataclass
class Prediction:
    """What one prompt produced."""

    mask: np.ndarray  # rows x cols, bool
    score: float  # the decoder's predicted IoU
    low_res_logits: np.ndarray  # 1 x 256 x 256, float32: feeds a later prompt's mask input
    logits: np.ndarray | None = None  # rows x cols, float32, when asked for (to average views)


class EmbeddingCache:
    """Image embeddings kept in memory (least recently used out first) and optionally on disk.

    Keys hash the model, the precision and the exact 8-bit image, so the volume content, slice
    and window are all part of the key without being named.
    """

    def __init__(self, max_bytes: int = 2 << 30, directory: os.PathLike | None = None):
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory else None
        self._items: OrderedDict[str, Embedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(model_id: str, precision: str, image: np.ndarray) -> str:
        digest = hashlib.sha256(f"{model_id}|{precision}|{image.shape}".encode())
        digest.update(np.ascontiguousarray(image).data)
        return digest.hexdigest()

    def get(self, key: str) -> Embedding | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
        if item is None and self.directory is not None:
            path = self.directory / f"{key}.pt"
            if path.is_file():
                stored = torch.load(path, map_location="cpu", weights_only=True)
                item = Embedding(
                    stored["features"], tuple(stored["original_size"]), tuple(stored["input_size"])
                )
                self._remember(key, item)
        return item

    def put(self, key: str, item: Embedding) -> None:
        self._remember(key, item)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Two processes filling one cache folder each write a file of their own, then rename.
            with files.replaced_atomically(self.directory / f"{key}.pt") as partial:
                torch.save(
                    {
                        "features": item.features,
                        "original_size": list(item.original_size),
                        "input_size": list(item.input_size),
                    },
                    partial,
                )

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


class SamEngine:
    """Encodes slices and decodes prompts with one ``Sam`` model.

    ``backend`` and ``precision`` pick the runtime of both parts ("auto": chosen from the CPU and
    what is installed, bf16 only where native and where it passes ``check``, the precision check
    its builder hands in, e.g. ``accuracy_guard.GUARD``; see :func:`runtimes.prepare`, which
    logs the choice through ``log``); ``runtime`` gives a prepared one instead. ``batch_size`` is
    how many slices go through the encoder at once (default 1 on a CPU, where batches were slower
    per slice, and 8 on a GPU).

    ``workers``: how many slices a caller may segment at once, each in its own :meth:`lane`
    with an equal share of the threads. Default: 2 with ONNX Runtime or OpenVINO on 2 or more
    cores, else 1: two one-thread sessions side by side are faster than one two-thread session,
    whose threads wait on each other between the many small operations (see the documentation on
    speed). PyTorch's threads are shared by the whole process, so its engines keep one worker.

    ``seconds``: time spent in the encoder and decoder calls ("encode", "decode"), summed over
    the lanes, for benchmarks.
    """

    def __init__(
        self,
        model,
        precision: str = "auto",
        batch_size: int | None = None,
        cache: EmbeddingCache | None = None,
        backend: str = "auto",
        log=None,
        workers: int | None = None,
        runtime: runtimes.Runtime | None = None,
        check: runtimes.PrecisionCheck | None = None,
    ):
        self.model = model
        self.device = str(model.device)
        self.batch_size = max(1, int(batch_size or (8 if self.device.startswith("cuda") else 1)))
        self.cache = cache
        self.image_size = model.image_encoder.img_size
        self.transform = ResizeLongestSide(self.image_size)
        self.model_id = (
            f"{getattr(model, 'spec', None) and model.spec.name}:{getattr(model, 'checkpoint', '')}"
        )
        self.encoded_slices = 0  # slices that went through the encoder (cache misses)
        self.seconds = {"encode": 0.0, "decode": 0.0}
        self._count_lock = threading.Lock()
        self._lane = threading.local()  # per calling thread: its lane's thread count
        self.threads = torch.get_num_threads()
        self.runtime = runtime or runtimes.prepare(
            model, backend, precision, self.threads, log=log, check=check
        )
        self.encoder, self.decoder = self.runtime.encoder, self.runtime.decoder
        self.precision = self.runtime.precision
        self.backend = self.runtime.backend
        if workers is None:
            on_cpu_runtimes = {self.encoder.name, self.decoder.name} <= {"onnxruntime", "openvino"}
            workers = 2 if on_cpu_runtimes and self.threads >= 2 else 1
        self.workers = max(1, int(workers))

    @contextmanager
    def lane(self):
        """Within this block the calling thread's model calls use ``threads // workers`` threads,
        so that ``workers`` threads can each segment a slice at the same time (each call hands
        the runtime part its lane's thread count)."""
        self._lane.threads = max(1, self.threads // self.workers)
        try:
            yield
        finally:
            del self._lane.threads

    def _timed(self, stage: str, function, *inputs):
        started = time.perf_counter()
        try:
            return function(*inputs, threads=getattr(self._lane, "threads", None))
        finally:
            with self._count_lock:
                self.seconds[stage] += time.perf_counter() - started

    # -- encoder -----------------------------------------------------------------------------
    def _prepare(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Resize (as SamPredictor.set_image does), normalise and pad one uint8 RGB image."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}.")
        resized = self.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.model.preprocess(tensor.float()), tuple(resized.shape[:2])

    @torch.inference_mode()
    def _encode_batch(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        prepared = [self._prepare(image) for image in images]
        batch = torch.cat([tensor for tensor, _ in prepared])
        features = self._timed("encode", self.encoder, batch).float()
        with self._count_lock:
            self.encoded_slices += len(images)
        return [
            Embedding(features[i : i + 1].clone(), tuple(image.shape[:2]), input_size)
            for i, (image, (_, input_size)) in enumerate(zip(images, prepared, strict=True))
        ]

    def encode(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        """Embeddings of uint8 RGB images, from the cache where possible, the rest in batches."""
        results: list[Embedding | None] = [None] * len(images)
        keys = [None] * len(images)
        todo = []
        for index, image in enumerate(images):
            if self.cache is not None:
                keys[index] = EmbeddingCache.key(self.model_id, self.precision, image)
                results[index] = self.cache.get(keys[index])
            if results[index] is None:
                todo.append(index)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for index, embedding in zip(
                chunk, self._encode_batch([images[i] for i in chunk]), strict=True
            ):
                results[index] = embedding
                if self.cache is not None:
                    self.cache.put(keys[index], embedding)
        return results

    # -- decoder -----------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(
        self,
        embedding: Embedding,
        prompts: Sequence[Prompt],
        mask_inputs: Sequence[np.ndarray | None] | None = None,
        logits: bool = False,
    ) -> list[Prediction]:
        """Masks for ``prompts`` on one slice; prompts of the same shape share one decoder call.

        ``mask_inputs`` optionally gives each prompt a 1 x 256 x 256 low-resolution logit mask
        (a previous :class:`Prediction`'s ``low_res_logits``). ``logits`` also returns the
        full-resolution logits (mask = logits > 0).
        """
        mask_inputs = list(mask_inputs) if mask_inputs is not None else [None] * len(prompts)
        groups: dict[tuple, list[int]] = {}
        for index, prompt in enumerate(prompts):
            shape = (
                None if prompt.points is None else len(prompt.points),
                prompt.box is not None,
                mask_inputs[index] is not None,
                prompt.multimask,
            )
            groups.setdefault(shape, []).append(index)
        results: list[Prediction | None] = [None] * len(prompts)
        for (_n_points, _has_box, has_mask, multimask), indices in groups.items():
            for index, prediction in zip(
                indices,
                self._decode_group(
                    embedding,
                    [prompts[i] for i in indices],
                    [mask_inputs[i] for i in indices] if has_mask else None,
                    multimask,
                    logits,
                ),
                strict=True,
            ):
                results[index] = prediction
        return results

    def _sparse_inputs(
        self, prompts: Sequence[Prompt], original_size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points and box corners of same-shaped prompts, in the model's input frame."""
        coords, labels = [], []
        for prompt in prompts:
            points = (
                []
                if prompt.points is None
                else [self.transform.apply_coords(prompt.points, original_size)]
            )
            kinds = [] if prompt.labels is None else [prompt.labels.astype(np.float32)]
            if prompt.box is not None:
                points.append(
                    self.transform.apply_boxes(prompt.box[None], original_size).reshape(2, 2)
                )
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
            masks, has_mask = (
                torch.from_numpy(np.stack(mask_inputs).astype(np.float32)),
                torch.ones(1),
            )
        else:
            masks, has_mask = torch.zeros(len(prompts), 1, *mask_size), torch.zeros(1)
        device = self.device
        low_res, scores = self._timed(
            "decode",
            self.decoder,
            embedding.features.to(device),
            coords.to(device),
            labels.to(device),
            masks.to(device),
            has_mask.to(device),
        )
        if multimask:
            # SAM's advice for ambiguous prompts: of the three multimask outputs, keep the one with
            # the best predicted IoU.
            best = 1 + scores[:, 1:].argmax(dim=1)
        else:
            best = torch.zeros(len(prompts), dtype=torch.long, device=scores.device)
        rows = torch.arange(len(prompts), device=scores.device)
        low_res, scores = low_res[rows, best][:, None], scores[rows, best][:, None]
        with torch.inference_mode():
            full = self.model.postprocess_masks(
                low_res.to(device), embedding.input_size, embedding.original_size
            )
        full_logits = (full - self.model.mask_threshold).float().cpu().numpy()
        low_res = low_res.float().cpu().numpy()
        scores = scores.float().cpu().numpy()
        return [
            Prediction(
                full_logits[i, 0] > 0,
                float(scores[i, 0]),
                low_res[i],
                full_logits[i, 0] if want_logits else None,
            )
            for i in range(len(prompts))
        ]
