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
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import imaging, strategies
from . import modality as modalities
from .engine import SamEngine
from .errors import Cancelled, SettingError
from .prompts import bounding_box

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]


@dataclass
class SliceOutcome:
    """What happened on one slice (for logs and records)."""

    slice: int
    segments: list[Hashable]


@dataclass
class PipelineResult:
    masks: dict[Hashable, np.ndarray]  # key -> bool array, same shape and layout as the volume
    geometry: imaging.SliceGeometry
    window: imaging.Window
    strategy: str
    slices: list[SliceOutcome]
    modality: str = "ct"  # what the strategy was told: ct or xray


def _check_inputs(volume: np.ndarray, prompt_masks: dict[Hashable, np.ndarray]) -> None:
    if volume.ndim != 3:
        raise ValueError(
            f"The volume must be 3D (a 2D image as one slice), got shape {volume.shape}."
        )
    if not prompt_masks:
        raise ValueError("No prompt segments were given.")
    for key, mask in prompt_masks.items():
        if mask.shape != volume.shape:
            raise ValueError(
                f"Prompt segment {key!r} has shape {mask.shape}, the volume {volume.shape}."
            )


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


def _in_order(
    function, items: Sequence, engine, cancel: CancelCallback | None
) -> Iterator[tuple[object, object]]:
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
    prompt_masks: dict[Hashable, np.ndarray],
    engine: SamEngine,
    strategy: str | Callable = "auto",
    window: str | imaging.Window = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    propagate: bool | Propagation = False,
    modality: str = "auto",
    declared_modality: str | None = None,
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
    model_name = getattr(getattr(engine.model, "spec", None), "name", "")
    strategy_name, segmenter = strategies.resolve(strategy, model_name)
    rules = propagate if isinstance(propagate, Propagation) or not propagate else Propagation()
    window = imaging.resolve_window(window, volume)
    keys = list(prompt_masks)
    volume_view = geometry.view(volume)
    modality, _ = modalities.decide(modality, volume_view, declared_modality)
    prompt_views = {key: geometry.view(mask) for key, mask in prompt_masks.items()}
    has_prompt = np.logical_or.reduce([view.any(axis=(1, 2)) for view in prompt_views.values()])
    annotated = [int(s) for s in np.flatnonzero(has_prompt)]
    report = progress or (lambda fraction, message: None)
    report(0.0, f"{len(annotated)} slices with prompts")
    total = len(volume_view) if rules else len(annotated)
    written = _Written(volume.shape, geometry, keys, total, report, bool(rules))
    slices = _SliceSegmenter(volume_view, window, engine, modality)

    def annotated_slice(s: int):
        slice_masks = {key: np.ascontiguousarray(prompt_views[key][s]) for key in keys}
        return (slice_masks,) + slices.segment(s, slice_masks, segmenter)

    done = _in_order(annotated_slice, annotated, engine, cancel)
    if not rules:
        for s, (slice_masks, predicted, _) in done:
            written.record(s, slice_masks, predicted)
    else:  # Propagation: correction clicks need a true mask, which propagated slices lack.
        carrier = strategies.without_refinement(segmenter)
        walk = PropagationWalk(
            rules, {}, partial(slices.segment, chooser=carrier), written.record, cancel
        )
        walk.run(walk.start(done), set(annotated), len(volume_view), written.views)
        report(1.0, f"Segmented {len(written.outcomes)} slices")
    return PipelineResult(
        written.outputs, geometry, window, strategy_name, written.outcomes, modality
    )


class _SliceSegmenter:
    """One slice of the volume as an RGB image in the window, segmented by a strategy."""

    def __init__(self, volume_view: np.ndarray, window, engine, modality: str):
        self.volume_view, self.window, self.engine, self.modality = (
            volume_view,
            window,
            engine,
            modality,
        )

    def segment(
        self, s: int, slice_masks, chooser
    ) -> tuple[dict[Hashable, np.ndarray], np.ndarray]:
        image = imaging.to_rgb8(self.volume_view[s], self.window)
        return chooser.segment(image, slice_masks, self.engine, self.modality), image


class _Written:
    """The output masks of :func:`segment_volume` as slices are recorded, and the progress."""

    def __init__(
        self, shape, geometry, keys, total: int, report: ProgressCallback, open_ended: bool
    ):
        self.outputs = {key: np.zeros(shape, dtype=bool) for key in keys}
        self.views = {key: geometry.view(mask) for key, mask in self.outputs.items()}
        self.outcomes: list[SliceOutcome] = []
        self.total, self.report, self.open_ended = total, report, open_ended

    def record(self, s: int, slice_masks, predicted) -> None:
        for key, mask in predicted.items():
            self.views[key][s] |= mask
        self.outcomes.append(
            SliceOutcome(slice=s, segments=[k for k, m in slice_masks.items() if m.any()])
        )
        self.report(
            len(self.outcomes) / self.total,
            f"Segmented {len(self.outcomes)} slices"
            + ("" if self.open_ended else f" of {self.total}"),
        )


@dataclass
class PropagationWalk:
    """Carries segments from the annotated slices outward, one slice at a time.

    Each step prompts slice ``t`` with the neighbour's result grown by ``rules.grow`` pixels; a
    segment goes on only while its mask keeps ``rules.min_area`` of its largest annotated area,
    overlaps the neighbour's by ``rules.min_overlap`` and stays within
    ``rules.max_intensity_shift`` of its annotated mean intensity; where it stops, it keeps
    nothing on that slice.
    """

    rules: Propagation
    references: dict[
        Hashable, tuple[int, list[float]]
    ]  # per key: largest annotated area, mean intensities
    segment: Callable  # (slice, {key: prompt mask}) -> ({key: mask}, image)
    record: Callable  # (slice, prompts, predicted) -> None
    cancel: CancelCallback | None = None

    def start(self, annotated) -> list:
        """Record the annotated slices (``(slice, (prompts, predicted, image))`` as they finish),
        note each segment's annotated area and intensity; the frontier to walk from."""
        frontier = []
        for s, (slice_masks, predicted, image) in annotated:
            self.record(s, slice_masks, predicted)
            for key, mask in slice_masks.items():
                if mask.any():
                    area, intensity = self.references.get(key, (0, []))
                    self.references[key] = (
                        max(area, int(mask.sum())),
                        intensity + [float(image[..., 0][mask].mean())],
                    )
            live = {key: m for key, m in predicted.items() if m.any()}
            frontier += [(s, -1, live), (s, +1, live)]
        return frontier

    def carries(self, key, mask: np.ndarray, previous: np.ndarray, image: np.ndarray) -> bool:
        area, intensities = self.references[key]
        if mask.sum() < self.rules.min_area * area:
            return False
        if (mask & previous).sum() / max(
            1, min(mask.sum(), previous.sum())
        ) < self.rules.min_overlap:
            return False
        return (
            abs(float(image[..., 0][mask].mean()) - float(np.mean(intensities)))
            <= self.rules.max_intensity_shift
        )

    def run(self, frontier, done: set, n_slices: int, output_views) -> None:
        """Walk from ``frontier`` (``(slice, direction, {key: mask})``) over slices not ``done``."""
        while frontier:
            s, direction, previous = frontier.pop(0)
            t = s + direction
            if not previous or t < 0 or t >= n_slices or t in done:
                continue
            done.add(t)
            if self.cancel is not None and self.cancel():
                raise Cancelled()
            prompts = {key: _grown(mask, self.rules.grow) for key, mask in previous.items()}
            predicted, image = self.segment(t, prompts)
            self.record(t, prompts, predicted)
            carried = {
                key: mask
                for key, mask in predicted.items()
                if self.carries(key, mask, previous[key], image)
            }
            for key in set(predicted) - set(carried):
                output_views[key][t] = False
            frontier.append((t, direction, carried))


def annotated_slices(
    masks: dict[Hashable, np.ndarray], geometry: imaging.SliceGeometry, which: str = "middle"
) -> list[int]:
    """Slices to keep prompts on when simulating a user who annotated only some slices.

    ``middle``: the one slice with the largest area of all segments together.
    """
    if which != "middle":
        raise SettingError(f"Unknown annotated-slice choice {which!r}: use 'middle'.")
    union = geometry.view(np.logical_or.reduce(list(masks.values())))
    return [int(np.argmax(union.sum(axis=(1, 2))))]


def keep_slices(
    masks: dict[Hashable, np.ndarray], geometry: imaging.SliceGeometry, slices: Sequence[int]
):
    """Copies of ``masks`` emptied everywhere except on ``slices``."""
    kept = {}
    for key, mask in masks.items():
        copy = np.zeros_like(mask)
        for s in slices:
            geometry.view(copy)[s] = geometry.view(mask)[s]
        kept[key] = copy
    return kept
