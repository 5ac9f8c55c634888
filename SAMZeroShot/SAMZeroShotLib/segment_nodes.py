"""The one entry point shared by the Slicer module and the command line.

:func:`process` reads the volume and prompt segments from MRML nodes, runs the slice pipeline,
scores the result against a reference, and writes a *new* segmentation node, a metrics table and
a Dice-per-slice plot into the volume's scene. Input nodes are never modified; on cancel or
error every node it created is removed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import imaging, metrics, mrml_io, placement, volumes, voxels
from . import modality as modalities
from .errors import BadVoxels, Cancelled, InputError
from .mrml_io import DICE_PLOT_REFERENCE, SUMMARY_ATTRIBUTE
from .parameters import Parameters

__all__ = [
    "process",
    "read_inputs",
    "Inputs",
    "Parameters",
    "Cancelled",
    "InputError",
    "TABLE_COLUMNS",
]

TABLE_COLUMNS = (
    ("scope", "slice", "segment", "scored")
    + metrics.SLICE_COLUMNS
    + ("reference_pixels", "predicted_pixels")
    + metrics.DISTANCE_COLUMNS
    + ("reference_ml", "predicted_ml", "model", "strategy")
)


def _reference_masks(reference_node, prompt_node, ids, volume_node):
    """Reference masks keyed like the prompts; segments of another node are matched by name."""
    if reference_node is None or reference_node is prompt_node:
        return None
    names = [prompt_node.GetSegmentation().GetSegment(segment_id).GetName() for segment_id in ids]
    reference_ids = [
        reference_node.GetSegmentation().GetSegmentIdBySegmentName(name) for name in names
    ]
    missing = [
        name for name, reference_id in zip(names, reference_ids, strict=True) if not reference_id
    ]
    if missing:
        have = ", ".join(
            reference_node.GetSegmentation().GetSegment(i).GetName()
            for i in mrml_io.segment_ids(reference_node)
        )
        raise InputError(
            f"Reference {reference_node.GetName()} has no segment named"
            f" {', '.join(map(repr, missing))} (it has: {have or 'no segments'}); name its segments"
            " like the prompt segments."
        )
    masks = mrml_io.segment_masks(reference_node, reference_ids, volume_node)
    return {
        segment_id: masks[reference_id]
        for segment_id, reference_id in zip(ids, reference_ids, strict=True)
    }


@dataclass
class Inputs:
    """The checked inputs of one run, as arrays in the volume's geometry."""

    volume: volumes.Volume  # voxels checked (NaN/inf filled where asked)
    geometry: imaging.SliceGeometry
    ids: list[str]
    prompt_masks: dict[str, np.ndarray]
    reference_masks: dict[str, np.ndarray] | None
    modality: str  # ct or xray: what the strategy is told


def read_inputs(
    volume_node,
    prompt_node,
    segment_ids: Sequence[str] | None = None,
    reference_node=None,
    parameters: Parameters | None = None,
    log: Callable[[str], None] | None = None,
    volume: volumes.Volume | None = None,
) -> Inputs:
    """Every check :func:`process` makes of its inputs, without the model; raises
    :class:`InputError`.

    Empty prompt segments are left out (and logged); NaN or infinite voxels are refused unless
    ``parameters.fill_nonfinite``. Nothing is added to the scene. ``volume``: what
    :func:`~.volumes.volume_from_node` gives for ``volume_node`` (the default), with a modality
    the node does not record where the caller knows it (the command line: the file's).
    """
    parameters = parameters or Parameters()
    say = log or logging.getLogger(__name__).info
    if volume is None:
        volume = volumes.volume_from_node(volume_node)
    volume, geometry = _checked_volume(volume, parameters, say)
    ids = mrml_io.resolve_segment_ids(prompt_node, segment_ids)
    prompt_masks = mrml_io.segment_masks(prompt_node, ids, volume_node)
    empty = [
        prompt_node.GetSegmentation().GetSegment(i).GetName()
        for i, mask in prompt_masks.items()
        if not mask.any()
    ]
    if len(empty) == len(ids):
        raise InputError(
            f"The selected segments of {prompt_node.GetName()} do not overlap "
            f"{volume_node.GetName()}: draw them on this volume or pick other segments."
        )
    if empty:
        say(f"Skipping empty segments: {', '.join(empty)}")
        ids = [i for i in ids if prompt_masks[i].any()]
        prompt_masks = {i: prompt_masks[i] for i in ids}
    reference_masks = _reference_masks(reference_node, prompt_node, ids, volume_node)
    modality, why = modalities.decide(parameters.modality, volume, geometry)
    say(
        f"{volume.name}: {volume.voxels.shape[::-1]} voxels, {geometry.orientation} slices, "
        f"{'a CT' if modality == 'ct' else 'a radiograph'} ({why}); "
        f"segments: {', '.join(prompt_node.GetSegmentation().GetSegment(i).GetName() for i in ids)}"
    )
    return Inputs(volume, geometry, ids, prompt_masks, reference_masks, modality)


def _checked_volume(volume: volumes.Volume, parameters: Parameters, say):
    """``(volume with usable voxels, slice geometry)``; the notes on its voxels go to ``say``."""
    if volume.voxels.ndim != 3:
        raise InputError(f"Volume {volume.name} is not a 3D image.")
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape, parameters.slice_axis)
    try:
        checked, notes = voxels.checked(volume.voxels, geometry, fill=parameters.fill_nonfinite)
    except BadVoxels as error:
        raise InputError(f"Volume {volume.name}: {error}") from None
    for note in notes:
        say(f"{volume.name}: {note}")
    return replace(volume, voxels=checked), geometry


def process(
    volume_node,
    prompt_node,
    segment_ids: Sequence[str] | None = None,
    reference_node=None,
    parameters: Parameters | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    compute: Callable[[Callable], object] | None = None,
    inputs: Inputs | None = None,
    engines=None,
) -> tuple[object, object]:
    """Segment ``volume_node`` with prompts from ``prompt_node``.

    :param segment_ids: IDs or names of the prompt segments (default: all).
    :param reference_node: segments scored against, matched by name (default: the prompt
        segmentation itself: the paper's evaluation with oracle prompts).
    :param parameters: model, strategy, window, modality, device, ... (:class:`Parameters`). With
        ``modality`` ``auto``, the DICOM Modality recorded for the volume decides, then the number
        of slices, then the image content (:mod:`modality`).
    :param progress: ``progress(fraction, message)``; may be called from ``compute``'s thread.
    :param cancel: polled between batches; when it returns True, :class:`Cancelled` is raised.
    :param log: receives one line per step.
    :param compute: runs the torch-heavy part and the scoring as ``compute(fn)`` (e.g. on a
        worker thread); default runs it inline. MRML work stays on the calling thread.
    :param inputs: what :func:`read_inputs` returned for these nodes and parameters, when the
        caller checked them already (e.g. before loading the model).
    :param engines: the caller's :class:`~.engines.EngineFactory`, which gives the engine (and
        keeps it, with its embedding cache, for the caller's next run); None: an engine built
        for this run only.
    :returns: ``(outputSegmentationNode, metricsTableNode)``; the table references its plot chart
        with the role :data:`DICE_PLOT_REFERENCE` and has a one-line summary in the attribute
        :data:`SUMMARY_ATTRIBUTE`.
    :raises InputError: an input node cannot be used (the message says why and what to do).
    """
    parameters = (parameters or Parameters()).validate()
    say = log or logging.getLogger(__name__).info
    started = time.perf_counter()
    if inputs is None:
        inputs = read_inputs(volume_node, prompt_node, segment_ids, reference_node, parameters, say)
    # Everything the results need from the input nodes is read now: the Slicer module keeps its
    # event loop running during the job, so a user may delete an input meanwhile.
    scene = volume_node.GetScene()
    descriptions = mrml_io.segment_descriptions(prompt_node, inputs.ids)
    input_nodes = [node for node in (volume_node, prompt_node, reference_node) if node is not None]

    result, (records, summary) = (compute or (lambda fn: fn()))(
        lambda: _segment_and_score(
            inputs, parameters, descriptions, progress, cancel, say, started, engines
        )
    )
    if cancel is not None and cancel():
        raise Cancelled()
    _check_still_in_scene(input_nodes, scene)
    say(summary)
    return _write_nodes(
        volume_node, scene, result, records, descriptions, inputs.ids, summary, parameters.model
    )


def _check_still_in_scene(input_nodes, scene) -> None:
    removed = [node.GetName() for node in input_nodes if node.GetScene() is not scene]
    if removed:
        raise InputError(
            f"{', '.join(removed)} left the scene during the run: nothing was created. "
            "Keep the inputs until the run ends."
        )


def _segment_and_score(
    inputs: Inputs, parameters, descriptions, progress, cancel, say, started, engines
):
    """The model's run and its scores, with no MRML. Scoring (surface distances over the whole
    volume) runs where the model ran: in the Slicer module that is the worker thread, so the
    event loop keeps turning, and Cancel works, through it."""
    result = _segment(inputs, parameters, progress, cancel, say, engines)
    if cancel is not None and cancel():
        raise Cancelled()
    if progress is not None:
        progress(1.0, "Scoring")
    return result, _score(result, inputs, descriptions, parameters.model, started)


def _score(result, inputs: Inputs, descriptions, model: str, started: float):
    """The metrics table's records and the one-line summary of a run."""
    names = {i: descriptions[i].name for i in inputs.ids}
    records = metrics.score_volume(
        result.masks, inputs.reference_masks or inputs.prompt_masks, inputs.geometry, names
    )
    for record in records:
        record["model"], record["strategy"] = model, result.strategy
    seconds = time.perf_counter() - started
    oracle = inputs.reference_masks is None
    summary = summarize(records, model, result.strategy, seconds, len(result.slices), oracle=oracle)
    return records, summary


def _segment(inputs: Inputs, parameters: Parameters, progress, cancel, say, engines):
    """The model's part of :func:`process` (no MRML): load the engine, run the slice pipeline."""
    from . import pipeline, propagation
    from .engines import EngineFactory

    report = progress or (lambda fraction, message: None)
    report(0.0, f"Loading model {parameters.model}")
    engines = engines if engines is not None else EngineFactory()
    engine = engines.get(parameters, progress=report, cancel=cancel, log=say)
    result = pipeline.segment_volume(
        inputs.volume,
        inputs.geometry,
        inputs.prompt_masks,
        engine,
        strategy=parameters.strategy,
        window=parameters.window,
        progress=report,
        cancel=cancel,
        propagate=parameters.propagate,
        modality=inputs.modality,
    )
    if result.stops:
        say(f"Propagation stopped: {propagation.describe_stops(result.stops)}")
    return result


def _write_nodes(volume_node, scene, result, records, descriptions, ids, summary: str, model: str):
    """The output segmentation, metrics table and Dice plot, named uniquely and placed beside the
    volume (:mod:`placement`); all removed again if one fails."""
    base = volume_node.GetName()
    created = []
    with mrml_io.removed_on_failure(created):
        segmentation = mrml_io.create_segmentation(
            volume_node,
            result.masks,
            descriptions,
            placement.unique_name(scene, f"{base} SAM segmentation"),
        )
        created.append(segmentation)
        table = mrml_io.create_table(
            scene, records, placement.unique_name(scene, f"{base} SAM metrics"), TABLE_COLUMNS
        )
        created.append(table)
        slice_numbers, columns = dice_series(records, [descriptions[i].name for i in ids])
        colors = {descriptions[i].name: descriptions[i].color for i in ids}
        chart_name = placement.unique_name(scene, f"{base} SAM Dice per slice")
        chart = mrml_io.create_dice_plot(scene, columns, slice_numbers, chart_name, colors, created)
        placement.place_outputs(volume_node, created[:2], created[2:], f"{chart_name} (plot data)")
        table.SetNodeReferenceID(DICE_PLOT_REFERENCE, chart.GetID())
        table.SetAttribute(SUMMARY_ATTRIBUTE, summary)
        table.SetAttribute("SAMZeroShot.Model", model)
        table.SetAttribute("SAMZeroShot.Strategy", result.strategy)
        table.SetAttribute("SAMZeroShot.Modality", result.modality)
    return segmentation, table


def dice_series(records, segment_names):
    """Slice numbers and, per segment and for the union, Dice on each scored slice (NaN
    elsewhere)."""
    slice_rows = [r for r in records if r["scope"] == "slice" and r["scored"]]
    slices = sorted({r["slice"] for r in slice_rows})
    position = {s: n for n, s in enumerate(slices)}
    columns = {}
    for name in [metrics.UNION] + list(segment_names):
        values = np.full(len(slices), np.nan)
        for r in slice_rows:
            if r["segment"] == name:
                values[position[r["slice"]]] = r["dice"]
        columns[name] = values
    return np.array(slices), columns


def summarize(
    records, model: str, strategy: str, seconds: float, n_slices: int, oracle: bool
) -> str:
    """One line: mean Dice over scored slices, volume Dice per segment, model, strategy, time."""
    mean = next(r for r in records if r["scope"] == "slice mean" and r["segment"] == metrics.UNION)
    volumes = [r for r in records if r["scope"] == "volume" and r["segment"] != metrics.UNION]
    per_segment = ", ".join(f"{r['segment']} {r['dice']:.3f}" for r in volumes)
    note = " (oracle prompts from the reference)" if oracle else ""
    return (
        f"Mean Dice {mean['dice']:.3f} / Jaccard {mean['jaccard']:.3f} over {mean['scored']} scored"
        f" slices{note}; volume Dice: {per_segment}; {model}, {strategy}; {n_slices} slices in"
        f" {seconds:.1f} s"
    )
