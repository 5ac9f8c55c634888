"""The slice loop: from a volume and its prompt segments to one 3D mask per segment.

Only slices that have prompts are encoded. Each slice is handed to the strategy (see
:mod:`strategies`), which batches what it encodes and decodes; the masks are placed back into the
volume's own array layout. Annotated slices are segmented ``engine.workers`` at a time (each in
an engine lane); results are placed and reported in slice order by the calling thread.
Progress is reported as ``progress(fraction, message)``; ``cancel()`` is polled before every
slice and raises :class:`Cancelled`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import imaging, modality as modalities, strategies
from .engine import SamEngine
from .errors import Cancelled
from .prompts import bounding_box

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]


@dataclass
class SliceOutcome:
    """What happened on one slice (for logs and records)."""

    slice: int
    segments: List[Hashable]


@dataclass
class PipelineResult:
    masks: Dict[Hashable, np.ndarray]  # key -> bool array, same shape and layout as the volume
    geometry: imaging.SliceGeometry
    window: imaging.Window
    strategy: str
    slices: List[SliceOutcome]
    modality: str = "ct"  # what the strategy was told: ct or xray


def _check_inputs(volume: np.ndarray, prompt_masks: Dict[Hashable, np.ndarray]) -> None:
    if volume.ndim != 3:
        raise ValueError(f"The volume must be 3D (a 2D image as one slice), got shape {volume.shape}.")
    if not prompt_masks:
        raise ValueError("No prompt segments were given.")
    for key, mask in prompt_masks.items():
        if mask.shape != volume.shape:
            raise ValueError(f"Prompt segment {key!r} has shape {mask.shape}, the volume {volume.shape}.")


@dataclass(frozen=True)
class Propagation:
    """How prompts travel from annotated slices to their neighbours, and when they stop.

    Each new slice is prompted with the previous slice's result, dilated by ``grow`` of its size
    (at least one pixel) so that a structure that widens still fits in its box. A segment stops
    (in that direction) when its new mask is smaller than ``min_area`` of its annotated area, when
    it overlaps the previous mask less than ``min_overlap`` (intersection over the smaller mask), or
    when its mean 8-bit intensity moves more than ``max_intensity_shift`` grey levels away from the
    annotated slice's (the box slid onto another tissue). These values were set before measuring
    and not tuned on the dev sets.
    """

    grow: float = 0.05
    min_area: float = 0.002
    min_overlap: float = 0.5
    max_intensity_shift: float = 40.0


def _grown(mask: np.ndarray, fraction: float) -> np.ndarray:
    import SimpleITK as sitk

    min_row, min_col, max_row, max_col = bounding_box(mask)
    radius = max(1, int(round(fraction * max(max_row - min_row, max_col - min_col))))
    image = sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)), [radius, radius])
    return sitk.GetArrayFromImage(image) > 0


def _in_order(function, items: Sequence, engine, cancel: Optional[CancelCallback]) -> Iterator[Tuple[object, object]]:
    """``(item, function(item))`` for each item in order, ``engine.workers`` computed at once.

    ``cancel`` is polled before each item starts; on cancel or error, items not started are
    dropped and the ones running are waited for, so no thread outlives the call.
    """
    workers = min(engine.workers, len(items))
    if workers <= 1:
        for item in items:
            if cancel is not None and cancel():
                raise Cancelled()
            yield item, function(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    def in_lane(item):
        with engine.lane():
            return function(item)

    pending = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="samzeroshot-slice") as pool:
        try:
            for item in items:
                if cancel is not None and cancel():
                    raise Cancelled()
                pending.append((item, pool.submit(in_lane, item)))
                if len(pending) == workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def segment_volume(
    volume: np.ndarray,
    geometry: imaging.SliceGeometry,
    prompt_masks: Dict[Hashable, np.ndarray],
    engine: SamEngine,
    strategy: Union[str, Callable] = "auto",
    window: Union[str, imaging.Window] = "auto",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
    propagate: Union[bool, Propagation] = False,
    modality: str = "auto",
    declared_modality: Optional[str] = None,
) -> PipelineResult:
    """Segment every slice of ``volume`` on which ``prompt_masks`` have any label.

    With ``propagate``, slices without prompts are segmented too: outward from the annotated
    slices, each prompted by its neighbour's result (see :class:`Propagation`).
    ``volume`` and the masks are arrays of the same shape (Slicer's ``[K, J, I]`` order);
    ``geometry`` says how slices are taken. ``modality``: ``ct``, ``xray`` or ``auto``, decided
    by :func:`modality.decide` from ``declared_modality`` (a DICOM Modality value), the number of
    slices and the content. Inputs are never modified.
    """
    _check_inputs(volume, prompt_masks)
    strategy_name, segmenter = strategies.resolve(strategy, getattr(getattr(engine.model, "spec", None), "name", ""))
    rules = (propagate if isinstance(propagate, Propagation) else Propagation()) if propagate else None
    window = imaging.resolve_window(window, volume)
    keys = list(prompt_masks)
    volume_view = geometry.view(volume)
    modality, _ = modalities.decide(modality, volume_view, declared_modality)
    prompt_views = {key: geometry.view(mask) for key, mask in prompt_masks.items()}
    outputs = {key: np.zeros(volume.shape, dtype=bool) for key in keys}
    output_views = {key: geometry.view(mask) for key, mask in outputs.items()}

    annotated = [int(s) for s in np.flatnonzero(np.logical_or.reduce(
        [view.any(axis=(1, 2)) for view in prompt_views.values()]))]
    report = progress or (lambda fraction, message: None)
    report(0.0, f"{len(annotated)} slices with prompts")
    total = len(volume_view) if rules else len(annotated)
    outcomes: List[SliceOutcome] = []

    def segment_slice(s: int, slice_masks, chooser) -> Tuple[Dict[Hashable, np.ndarray], np.ndarray]:
        image = imaging.to_rgb8(volume_view[s], window)
        return chooser.segment(image, slice_masks, engine, modality), image

    def record(s: int, slice_masks, predicted) -> None:
        for key, mask in predicted.items():
            output_views[key][s] |= mask
        outcomes.append(SliceOutcome(slice=s, segments=[k for k, m in slice_masks.items() if m.any()]))
        report(len(outcomes) / total, f"Segmented {len(outcomes)} slices" + ("" if rules else f" of {total}"))

    def annotated_slice(s: int):
        slice_masks = {key: np.ascontiguousarray(prompt_views[key][s]) for key in keys}
        return (slice_masks,) + segment_slice(s, slice_masks, segmenter)

    if rules is None:
        for s, (slice_masks, predicted, _) in _in_order(annotated_slice, annotated, engine, cancel):
            record(s, slice_masks, predicted)
        return PipelineResult(outputs, geometry, window, strategy_name, outcomes, modality)

    # Propagation: correction clicks need a true mask, which propagated slices do not have.
    carrier = strategies.without_refinement(segmenter)
    references = {}  # per key: (annotated area, mean intensity) of its annotated slices
    frontier = []  # (slice, direction, {key: mask}) still to be carried on
    for s, (slice_masks, predicted, image) in _in_order(annotated_slice, annotated, engine, cancel):
        record(s, slice_masks, predicted)
        for key, mask in slice_masks.items():
            if mask.any():
                area, intensity = references.get(key, (0, []))
                references[key] = (max(area, int(mask.sum())), intensity + [float(image[..., 0][mask].mean())])
        live = {key: m for key, m in predicted.items() if m.any()}
        frontier += [(s, -1, live), (s, +1, live)]
    done = set(annotated)
    while frontier:
        s, direction, previous = frontier.pop(0)
        t = s + direction
        if not previous or t < 0 or t >= len(volume_view) or t in done:
            continue
        done.add(t)
        if cancel is not None and cancel():
            raise Cancelled()
        prompts = {key: _grown(mask, rules.grow) for key, mask in previous.items()}
        predicted, image = segment_slice(t, prompts, carrier)
        record(t, prompts, predicted)
        carried = {}
        for key, mask in predicted.items():
            area, intensities = references[key]
            if mask.sum() < rules.min_area * area:
                continue
            overlap = (mask & previous[key]).sum() / max(1, min(mask.sum(), previous[key].sum()))
            if overlap < rules.min_overlap:
                continue
            if abs(float(image[..., 0][mask].mean()) - float(np.mean(intensities))) > rules.max_intensity_shift:
                continue
            carried[key] = mask
        # A segment that stopped keeps nothing on this slice.
        for key in set(predicted) - set(carried):
            output_views[key][t] = False
        frontier.append((t, direction, carried))
    report(1.0, f"Segmented {len(outcomes)} slices")
    return PipelineResult(outputs, geometry, window, strategy_name, outcomes, modality)


def annotated_slices(masks: Dict[Hashable, np.ndarray], geometry: imaging.SliceGeometry, which: str = "middle") -> List[int]:
    """Slices to keep prompts on when simulating a user who annotated only some slices.

    ``middle``: the one slice with the largest area of all segments together.
    """
    if which != "middle":
        raise ValueError(f"Unknown annotated-slice choice {which!r}: use 'middle'.")
    union = geometry.view(np.logical_or.reduce(list(masks.values())))
    return [int(np.argmax(union.sum(axis=(1, 2))))]


def keep_slices(masks: Dict[Hashable, np.ndarray], geometry: imaging.SliceGeometry, slices: Sequence[int]):
    """Copies of ``masks`` emptied everywhere except on ``slices``."""
    kept = {}
    for key, mask in masks.items():
        copy = np.zeros_like(mask)
        for s in slices:
            geometry.view(copy)[s] = geometry.view(mask)[s]
        kept[key] = copy
    return kept
