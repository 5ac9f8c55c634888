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
from dataclasses import dataclass, field

import numpy as np

from . import imaging, propagation, strategies
from . import modality as modalities
from .engine import SamEngine
from .errors import Cancelled
from .propagation import Stop, annotated_slices, keep_slices  # noqa: F401 (their old home)
from .volumes import Volume

#: The propagation rules (see :class:`propagation.Rules`), by their old name.
Propagation = propagation.Rules

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
    stops: list[Stop] = field(default_factory=list)  # where propagated segments stopped, and why


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
    volume: Volume,
    geometry: imaging.SliceGeometry,
    prompt_masks: dict[Hashable, np.ndarray],
    engine: SamEngine,
    strategy: str | Callable = "auto",
    window: str | imaging.Window = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    propagate: bool | Propagation = False,
    modality: str = "auto",
) -> PipelineResult:
    """Segment every slice of ``volume`` on which ``prompt_masks`` have any label; with
    ``propagate``, the others too, outward from those, each prompted by its neighbour's result
    (see :class:`Propagation`).

    Arguments:
      volume: the image (:class:`~.volumes.Volume`, voxels ``[K, J, I]``).
      geometry: how its slices are taken (:func:`imaging.slice_geometry` of its IJK-to-RAS).
      prompt_masks: bool arrays of the voxels' shape, one per segment.
      strategy: a name (``auto``: the model's default, :func:`strategies.resolve`) or object.
      modality: ``ct``, ``xray`` or ``auto`` (decided by :func:`modality.decide` from the volume).
    Returns:
      the masks, one bool array of the voxels' shape per segment, with what was used. Inputs are
      never modified.
    """
    voxels = volume.voxels
    _check_inputs(voxels, prompt_masks)
    strategy_name, segmenter = strategies.resolve(strategy, strategies.model_name_of(engine))
    rules = propagate if isinstance(propagate, Propagation) or not propagate else Propagation()
    window = imaging.resolve_window(window, voxels)
    keys = list(prompt_masks)
    volume_view = geometry.view(voxels)
    modality, _ = modalities.decide(modality, volume, geometry)
    prompt_views = {key: geometry.view(mask) for key, mask in prompt_masks.items()}
    has_prompt = np.logical_or.reduce([view.any(axis=(1, 2)) for view in prompt_views.values()])
    annotated = [int(s) for s in np.flatnonzero(has_prompt)]
    report = progress or (lambda fraction, message: None)
    report(0.0, f"{len(annotated)} slices with prompts")
    total = len(volume_view) if rules else len(annotated)
    written = _Written(voxels.shape, geometry, keys, total, report, bool(rules))
    slices = _SliceSegmenter(volume_view, window, engine, modality)

    def annotated_slice(s: int):
        slice_masks = {key: np.ascontiguousarray(prompt_views[key][s]) for key in keys}
        return (slice_masks,) + slices.segment(s, slice_masks, segmenter)

    done = _in_order(annotated_slice, annotated, engine, cancel)
    stops = []
    if not rules:
        for s, (slice_masks, predicted, _) in done:
            written.record(s, slice_masks, predicted)
    else:
        model = propagation.StrategyModel(volume_view, window, engine, segmenter, modality)
        stops = _propagated(done, model, rules, written, len(volume_view), cancel)
        report(1.0, f"Segmented {len(written.outcomes)} slices")
    return PipelineResult(
        written.outputs, geometry, window, strategy_name, written.outcomes, modality, stops
    )


def _propagated(done, model, rules, written, n_slices: int, cancel) -> list[Stop]:
    """Record the annotated slices as they finish (``(slice, (prompts, predicted, image))``), walk
    from them (:func:`propagation.walk_volume`) and record the slices the walks reached; the
    stops."""
    annotated, predicted = {}, {}
    for s, (slice_masks, masks, _) in done:
        written.record(s, slice_masks, masks)
        annotated[s], predicted[s] = slice_masks, masks
    walked = propagation.walk_volume(
        n_slices, annotated, predicted, model, rules, cancel, on_slice=written.walked
    )
    for s, masks in sorted(walked.masks.items()):
        if s not in annotated and masks:
            written.place(s, masks)
    return walked.stops


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
        self.walked_count = 0

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

    def walked(self, s: int) -> None:
        """A slice segmented by propagation (placed later, once the walks are joined)."""
        self.walked_count += 1
        done = len(self.outcomes) + self.walked_count
        self.report(min(done / self.total, 1.0), f"Segmented {done} slices")

    def place(self, s: int, masks) -> None:
        """The masks a slice got from propagation."""
        for key, mask in masks.items():
            self.views[key][s] |= mask
        self.outcomes.append(SliceOutcome(slice=s, segments=list(masks)))
