"""The slice loop: from a volume and its prompt segments to one 3D mask per segment.

Only slices that have prompts are encoded. Slices go through the encoder in batches; each
slice's prompts are decoded together and the masks placed back into the volume's own array
layout. Progress is reported as ``progress(fraction, message)``; ``cancel()`` is polled between
batches and raises :class:`Cancelled`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Union

import numpy as np

from . import imaging, prompts as prompt_strategies
from .engine import SamEngine

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]


class Cancelled(Exception):
    """The user asked to stop; nothing was produced."""


@dataclass
class SliceOutcome:
    """What happened on one slice (for logs and records)."""

    slice: int
    segments: List[Hashable]
    sam_calls: int
    scores: Dict[Hashable, float] = field(default_factory=dict)


@dataclass
class PipelineResult:
    masks: Dict[Hashable, np.ndarray]  # key -> bool array, same shape and layout as the volume
    geometry: imaging.SliceGeometry
    window: imaging.Window
    strategy: str
    slices: List[SliceOutcome]


def resolve_strategy(strategy: Union[str, Callable], model_name: str = "litemedsam"):
    """The prompt function for a strategy name (``auto`` picks the best measured for the model)."""
    if callable(strategy):
        return getattr(strategy, "name", getattr(strategy, "__name__", "custom")), strategy
    if strategy == "auto":
        strategy = "box"
    if strategy not in prompt_strategies.STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: choose one of "
                         f"{', '.join(('auto',) + tuple(prompt_strategies.STRATEGIES))}.")
    return strategy, prompt_strategies.STRATEGIES[strategy]


def _check_inputs(volume: np.ndarray, prompt_masks: Dict[Hashable, np.ndarray]) -> None:
    if volume.ndim != 3:
        raise ValueError(f"The volume must be 3D (a 2D image as one slice), got shape {volume.shape}.")
    if not prompt_masks:
        raise ValueError("No prompt segments were given.")
    for key, mask in prompt_masks.items():
        if mask.shape != volume.shape:
            raise ValueError(f"Prompt segment {key!r} has shape {mask.shape}, the volume {volume.shape}.")


def segment_volume(
    volume: np.ndarray,
    geometry: imaging.SliceGeometry,
    prompt_masks: Dict[Hashable, np.ndarray],
    engine: SamEngine,
    strategy: Union[str, Callable] = "auto",
    window: Union[str, imaging.Window] = "auto",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
    propagate: bool = False,
) -> PipelineResult:
    """Segment every slice of ``volume`` on which ``prompt_masks`` have any label.

    ``volume`` and the masks are arrays of the same shape (Slicer's ``[K, J, I]`` order);
    ``geometry`` says how slices are taken. Inputs are never modified.
    """
    _check_inputs(volume, prompt_masks)
    if propagate:
        raise NotImplementedError("Propagation from annotated slices is not available yet.")
    strategy_name, make_prompts = resolve_strategy(strategy, getattr(getattr(engine.model, "spec", None), "name", ""))
    window = imaging.resolve_window(window, volume)
    keys = list(prompt_masks)
    volume_view = geometry.view(volume)
    prompt_views = {key: geometry.view(mask) for key, mask in prompt_masks.items()}
    outputs = {key: np.zeros(volume.shape, dtype=bool) for key in keys}
    output_views = {key: geometry.view(mask) for key, mask in outputs.items()}

    slices = [int(s) for s in np.flatnonzero(np.logical_or.reduce(
        [view.any(axis=(1, 2)) for view in prompt_views.values()]))]
    report = progress or (lambda fraction, message: None)
    report(0.0, f"{len(slices)} slices with prompts")
    outcomes: List[SliceOutcome] = []
    for start in range(0, len(slices), engine.batch_size):
        if cancel is not None and cancel():
            raise Cancelled()
        batch = slices[start:start + engine.batch_size]
        images = [imaging.to_rgb8(volume_view[s], window) for s in batch]
        embeddings = engine.encode(images)
        for s, embedding in zip(batch, embeddings):
            slice_masks = {key: np.ascontiguousarray(prompt_views[key][s]) for key in keys}
            slice_masks = {key: mask for key, mask in slice_masks.items() if mask.any()}
            slice_prompts = make_prompts(slice_masks)
            predictions = engine.decode(embedding, slice_prompts)
            outcome = SliceOutcome(slice=s, segments=list(slice_masks), sam_calls=len(slice_prompts))
            for prompt, prediction in zip(slice_prompts, predictions):
                parts = prompt_strategies.split_among_segments(prediction.mask, slice_masks, prompt.segments)
                for key, part in parts.items():
                    output_views[key][s] |= part
                    outcome.scores[key] = prediction.score
            outcomes.append(outcome)
        done = min(start + engine.batch_size, len(slices))
        report(done / max(len(slices), 1), f"Segmented {done} of {len(slices)} slices")
    return PipelineResult(outputs, geometry, window, strategy_name, outcomes)


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
