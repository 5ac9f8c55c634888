"""Cohort evaluation from files: the engine of ``samzeroshot evaluate``.

Images and masks are paired by file stem. Mask label 0 is background, 255 is "ignore" (left
out of scoring and never a prompt), every other label is one prompt segment. An X-ray is one
slice. Outputs (a stable interface, read by scripts outside this project):

* ``slices.csv`` - one row per scored slice (reference has any label): case, slice, dice, jaccard,
  sensitivity, precision, pixel counts, ``prompt_only_dice``; scores are for the union of all
  segments;
* ``cases.csv`` - one row per case: slice means, volume Dice/Jaccard, HD95, mean surface distance,
  the modality the strategy was told and why, and with ``propagate_from`` where each segment's
  walk stopped and why (``propagation_stops``, also in ``summary.json``);
* with ``--clicks N``: ``dice_by_clicks`` in both tables (the Dice after 0, 1, ..., N simulated
  correction clicks, ``;``-separated; see :mod:`corrections`) and in the summary (the means);
* ``summary.json`` - ``n_cases``, ``n_scored_slices``, ``mean_dice``, ``mean_jaccard`` (means over
  scored 2D slices, pooled over cases as the paper does), ``prompt_only_dice`` (the same mean for
  the prompt boxes themselves, filled: what the prompt alone gives), ``model``, ``strategy``,
  ``seconds``, ...

The files are written case by case by :class:`~.results.ResultsFolder`, so a stopped run keeps its
finished cases and a second run with the same settings carries on from them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__, imaging, metrics, voxels
from .errors import BadVoxels, Cancelled, CaseError
from .results import CaseResult, ResultsFolder
from .volumes import IMAGE_EXTENSIONS, Volume, as_3d, file_stem, read_volume  # noqa: F401 (read by layouts)

MASK_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".png", ".nrrd", ".nii")
IGNORE_LABEL = 255


@dataclass(frozen=True)
class MaskFile:
    """One mask file of a case and how its values become labels.

    ``label`` None: the file is a label map read as it is (0 background, 255 ignore, others
    segments), its values swapped by ``relabel`` (``((file value, label), ...)``) where a data set
    numbers its segments otherwise. ``label`` set: the file is one segment's binary mask (any
    value but 0 is in it, as with 0/255 masks), which becomes label ``label``.
    """

    path: Path
    label: int | None = None
    relabel: tuple[tuple[int, int], ...] = ()


@dataclass
class Case:
    """One image, its masks, and settings of its own (e.g. ``{"window": "ct-lung"}``; see
    :func:`case_settings`)."""

    name: str
    image_path: Path
    masks: tuple[MaskFile, ...]
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def mask_paths(self) -> list[Path]:
        return [mask.path for mask in self.masks]


#: Settings a case may carry (a data set's layout knows them per case); each applies where the
#: user left the setting on ``auto``.
CASE_SETTINGS = ("window",)


def case_settings(case: Case, parameters) -> dict[str, str]:
    """The settings ``case`` is segmented with: the user's, and the case's own where the user's is
    ``auto``."""
    chosen = {name: getattr(parameters, name) for name in CASE_SETTINGS}
    for name, value in case.settings.items():
        if name not in CASE_SETTINGS:
            raise ValueError(f"case {case.name}: unknown setting {name!r}")
        if chosen[name] == "auto":
            chosen[name] = value
    return chosen


def _mask_values(path: Path, shape) -> np.ndarray:
    """A mask file's values ``[K, J, I]`` (int) of ``shape``; a layered ``.seg.nrrd`` becomes one
    label map."""
    import SimpleITK as sitk

    try:
        image = as_3d(sitk.ReadImage(str(path)))
    except (RuntimeError, ValueError) as error:
        raise CaseError(
            path, f"not a readable mask ({str(error).strip().splitlines()[-1][:120]})"
        ) from None
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if not path.name.lower().endswith(".seg.nrrd"):
            raise CaseError(
                path, "a colour image, not a label mask: save the labels as one channel"
            )
        layers = np.moveaxis(array, -1, 0).astype(np.int64)
        combined = np.zeros(layers.shape[1:], dtype=np.int64)
        offset = 0
        for layer in layers:
            combined[layer > 0] = layer[layer > 0] + offset
            offset += int(layer.max())
        array = combined
    if tuple(array.shape) != tuple(shape):
        raise CaseError(
            path, f"mask size {_size(array.shape)} differs from its image's {_size(shape)}"
        )
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise CaseError(path, "not a label mask: it holds non-integer values")
    return array.astype(np.int64)


def _relabelled(values: np.ndarray, relabel: Sequence[tuple[int, int]]) -> np.ndarray:
    labels = values.copy()
    for value, label in relabel:
        labels[values == value] = label
    return labels


def _has_labels(labels: np.ndarray) -> bool:
    return bool(np.any((labels != 0) & (labels != IGNORE_LABEL)))


def read_labels(path, shape, relabel: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """A label array ``[K, J, I]`` (int) of ``shape``: 0 background, 255 ignore, others segments.

    A ``.seg.nrrd`` with several layers (overlapping segments) gets one label per layer and value.
    ``relabel`` swaps values (``((file value, label), ...)``).
    """
    path = Path(path)
    labels = _relabelled(_mask_values(path, shape), relabel)
    if not _has_labels(labels):
        raise CaseError(path, "no labels: every pixel is background (0) or ignore (255)")
    return labels


def read_case_labels(case: Case, shape) -> np.ndarray:
    """The case's masks as one label array of ``shape`` (binary masks become their labels)."""
    if len(case.masks) == 1 and case.masks[0].label is None:
        return read_labels(case.masks[0].path, shape, case.masks[0].relabel)
    labels = np.zeros(shape, dtype=np.int64)
    for mask in case.masks:
        values = _mask_values(mask.path, shape)
        inside = values != 0
        labels[inside] = (
            mask.label if mask.label is not None else _relabelled(values, mask.relabel)[inside]
        )
    if not _has_labels(labels):
        names = ", ".join(mask.path.name for mask in case.masks)
        raise CaseError(
            case.image_path, f"its masks ({names}) hold no labels: every pixel is background"
        )
    return labels


def _size(shape) -> str:
    """``[K, J, I]`` as "I x J x K" pixels, without K for a single slice."""
    dims = list(shape)[::-1]
    return " x ".join(str(d) for d in (dims[:2] if len(dims) == 3 and dims[2] == 1 else dims))


def _checked_volume(case: Case, fill_nonfinite: bool):
    """``(the case's volume with usable voxels, slice geometry, notes)``; bad voxels raise
    :class:`CaseError`."""
    volume = read_volume(case.image_path)
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape)
    try:
        checked, notes = voxels.checked(volume.voxels, geometry, fill=fill_nonfinite)
    except BadVoxels as error:
        raise CaseError(case.image_path, str(error)) from None
    return replace(volume, voxels=checked), geometry, notes


def check_case(case: Case, fill_nonfinite: bool = False) -> None:
    """Read a case once to find bad input before any time is spent on the model.

    The arrays are dropped and read again when the case is segmented: holding every case of a
    cohort in memory (some 140 MB per CT) would cost more than reading twice.
    """
    volume, _, _ = _checked_volume(case, fill_nonfinite)
    read_case_labels(case, volume.voxels.shape)


def prompt_only_dice(
    prompts, reference_union: np.ndarray, ignore: np.ndarray, geometry
) -> np.ndarray:
    """Per-slice Dice of the prompt itself (each segment's box filled, no model) against the
    reference."""
    from .strategies import fill_boxes

    filled = np.zeros(reference_union.shape, bool)
    views = {key: geometry.view(mask) for key, mask in prompts.items()}
    for s in np.flatnonzero(
        np.logical_or.reduce([view.any(axis=(1, 2)) for view in views.values()])
    ):
        for box in fill_boxes({key: view[s] for key, view in views.items()}).values():
            filled[s] |= box
    return metrics.per_slice_overlap(filled, reference_union, ignore)["dice"]


def evaluate_case(
    case: Case,
    engine,
    parameters,
    propagate_from: str | None = None,
    cancel=None,
    clicks: int = 0,
    correction: str | None = None,
) -> CaseResult:
    """Segment one case with ``parameters`` (and the case's own settings) and score it.

    The one function that computes a case, in this process or on a cluster's worker. Each row
    also carries ``prompt_only_dice``: the Dice of the prompt boxes themselves, filled, a
    baseline that costs no model call. ``clicks``: simulated correction clicks per slice and
    segment after the first result (``dice_by_clicks``), applied with ``correction`` (see
    :mod:`interactive`).
    """
    from . import modality as modalities
    from . import pipeline, propagation

    started = time.perf_counter()
    volume, geometry, notes, reference, ignore = _read_case(case, parameters.fill_nonfinite)
    prompts = reference
    if propagate_from is not None:
        prompts = pipeline.keep_slices(
            reference, geometry, pipeline.annotated_slices(reference, geometry, propagate_from)
        )
    modality, reason = modalities.decide(parameters.modality, volume, geometry)
    result = pipeline.segment_volume(
        volume,
        geometry,
        prompts,
        engine,
        strategy=parameters.strategy,
        window=case_settings(case, parameters)["window"],
        cancel=cancel,
        propagate=propagate_from is not None,
        modality=modality,
    )
    slice_rows, case_row = _case_scores(case.name, result, reference, prompts, ignore, geometry)
    if clicks:
        views = (volume.voxels, reference, prompts, ignore)
        _click_scores(slice_rows, case_row, views, result, engine, clicks, correction)
    case_row.update(
        n_segments=len(reference),
        seconds=time.perf_counter() - started,
        modality=modality,
        modality_reason=reason,
    )
    if propagate_from is not None:
        names = {key: f"label {key}" for key in reference}
        case_row["propagation_stops"] = propagation.describe_stops(result.stops, names)
    return CaseResult(case.name, slice_rows, case_row, notes)


def _click_scores(slice_rows, case_row, views, result, engine, clicks, correction) -> None:
    """Add ``dice_by_clicks`` to each scored slice's row and the case's means to its row."""
    from .corrections import dice_by_clicks

    volume, reference, prompts, ignore = views
    geometry = result.geometry
    volume_view, ignore_view = geometry.view(volume), geometry.view(ignore)
    by_key = {
        name: {key: geometry.view(mask) for key, mask in masks.items()}
        for name, masks in (("reference", reference), ("result", result.masks), ("prompt", prompts))
    }
    for row in slice_rows:
        s = row["slice"]
        row["dice_by_clicks"] = dice_by_clicks(
            imaging.to_rgb8(volume_view[s], result.window),
            {key: view[s] for key, view in by_key["reference"].items()},
            {key: view[s] for key, view in by_key["result"].items()},
            {key: view[s] for key, view in by_key["prompt"].items()},
            engine,
            clicks,
            ignore_view[s],
            correction,
        )
    curves = np.array([row["dice_by_clicks"] for row in slice_rows], dtype=float)
    case_row["dice_by_clicks"] = [float(v) for v in curves.mean(axis=0)] if len(curves) else []


def _read_case(case: Case, fill_nonfinite: bool) -> tuple[Volume, object, list, dict, np.ndarray]:
    """``(volume, geometry, notes, {label: reference mask}, ignore mask)`` of a case."""
    volume, geometry, notes = _checked_volume(case, fill_nonfinite)
    labels = read_case_labels(case, volume.voxels.shape)
    segment_labels = [int(v) for v in np.unique(labels) if v not in (0, IGNORE_LABEL)]
    reference = {value: labels == value for value in segment_labels}
    return volume, geometry, notes, reference, labels == IGNORE_LABEL


def _case_scores(name: str, result, reference, prompts, ignore, geometry):
    """A case's slice rows (scored slices) and the scores of its case row, from
    :func:`~.metrics.score_volume` on the union of its segments."""
    records = metrics.score_volume(
        result.masks, reference, geometry, ignore=ignore, union_only=True
    )
    prompted = {outcome.slice for outcome in result.slices}
    reference_union = geometry.view(np.logical_or.reduce(list(reference.values())))
    baseline = prompt_only_dice(prompts, reference_union, geometry.view(ignore), geometry)
    row_fields = metrics.SLICE_COLUMNS + ("reference_pixels", "predicted_pixels")
    slice_rows = [
        {
            "case": name,
            "slice": r["slice"],
            **{field: r[field] for field in row_fields},
            "prompted": int(r["slice"] in prompted),
            "prompt_only_dice": float(baseline[r["slice"]]),
        }
        for r in records
        if r["scope"] == "slice" and r["scored"]
    ]
    whole = next(r for r in records if r["scope"] == "volume")
    scored = [r["slice"] for r in slice_rows]

    def mean(column: str) -> float:
        return float(np.mean([r[column] for r in slice_rows])) if slice_rows else math.nan

    case_row = {
        "case": name,
        "n_scored_slices": len(scored),
        "n_segmented_slices": len(result.slices),
        "mean_dice": mean("dice"),
        "mean_jaccard": mean("jaccard"),
        "volume_dice": whole["dice"],
        "volume_jaccard": whole["jaccard"],
        **{column: whole[column] for column in metrics.DISTANCE_COLUMNS},
        "prompt_only_dice": float(np.mean(baseline[scored])) if scored else math.nan,
    }
    return slice_rows, case_row


def prepare(
    found: tuple[list[Case], list[CaseError]],
    where,
    keep_going: bool = False,
    fill_nonfinite: bool = False,
) -> tuple[list[Case], list[CaseError]]:
    """Read every case a layout found once: ``(usable cases, problems)``, before any time goes to
    the model.

    ``found`` is a layout's ``(cases, problems)``; ``where`` names the data in the error raised
    when nothing is usable. Raises the first :class:`CaseError` unless ``keep_going``.
    """
    cases, problems = found
    problems = list(problems)
    good = []
    for case in cases:
        try:
            check_case(case, fill_nonfinite)
            good.append(case)
        except CaseError as error:
            problems.append(error)
    if problems and not keep_going:
        raise problems[0]
    if not good:
        raise CaseError(where, "no usable image/mask pairs")
    return good, problems


def run_settings(
    parameters,
    source: dict[str, str],
    propagate_from: str | None = None,
    clicks: int = 0,
    correction: str | None = None,
) -> dict:
    """What an evaluation's results depend on: a results folder made with other settings is not
    resumed.

    ``source`` names the data (a layout's :func:`~.layouts.source`). The settings are those
    :class:`~.parameters.Parameters` marks as changing results
    (:meth:`~.parameters.Parameters.results_settings`).
    """
    from .interactive import DEFAULT_CORRECTION

    # Only runs with clicks name them, so that folders made before they existed still resume.
    with_clicks = (
        {"clicks": clicks, "correction": correction or DEFAULT_CORRECTION} if clicks else {}
    )
    return {
        **parameters.results_settings(),
        "propagate_from": propagate_from,
        **with_clicks,
        **source,
        "version": __version__,
    }


def engine_about(engine) -> dict[str, str]:
    """Where and how an engine runs, for the summary (``threads``: of each process that ran
    cases)."""
    return {
        "device": engine.device,
        "precision": engine.precision,
        "backend": engine.backend,
        "threads": str(engine.threads),
    }


class Recorder:
    """Keeps each finished case in the results folder and reports it, whoever computed it.

    The loop of :func:`evaluate` and the cluster runner (:mod:`.cluster`) both hand their cases
    here, so that a cohort's files and log are the same however it was computed.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        folder: ResultsFolder,
        parameters,
        propagate_from: str | None,
        skipped: Sequence[CaseError] = (),
        progress: Callable[[int, int], object] | None = None,
    ):
        """``progress(total, done)`` makes the view of the run's progress (a
        :class:`~.progress.Counter`; default: silent)."""
        from .progress import Counter

        about = {**parameters.summary_settings(), "propagate_from": propagate_from}
        own = {case.name: case.settings for case in cases if case.settings}
        if own:
            about["case_settings"] = own
        self.folder, self.n_cases = folder, len(cases)
        self.todo = folder.plan(
            [case.name for case in cases],
            [{"file": p.path, "problem": p.problem} for p in skipped],
            about,
        )
        self.progress = (progress or Counter)(len(cases), len(cases) - len(self.todo))
        if len(self.todo) < len(cases):
            self.progress.note(
                f"resuming: {len(cases) - len(self.todo)} of {len(cases)} cases are already in "
                f"{folder.folder}"
            )
        self._engines: dict[str, list[str]] = {}

    def engine_used(self, about: dict[str, str]) -> None:
        """Note where a case ran (device, precision, backend); workers that differ are all named."""
        for key, value in about.items():
            seen = self._engines.setdefault(key, [])
            if value not in seen:
                seen.append(value)
                self.folder.about[key] = ", ".join(seen)

    def keep(self, result: CaseResult) -> None:
        self.folder.record(result)
        for note in result.notes:
            self.progress.note(f"{result.name}: {note}")
        row = result.case_row
        if row.get("propagation_stops"):
            self.progress.note(f"{result.name}: propagation stopped: {row['propagation_stops']}")
        self.progress.advance(
            f"{result.name}: mean Dice {row['mean_dice']:.4f} over {row['n_scored_slices']} slices "
            f"({row['seconds']:.1f} s)",
            slices=row["n_segmented_slices"],
        )

    def fail(self, case: Case, reason: str) -> None:
        """A case that could not be computed: listed in the summary; a later run tries it again."""
        self.folder.fail(case.name, str(case.image_path), reason)
        self.progress.note(f"{case.name}: failed: {reason}")

    def finish(self) -> dict:
        return self.folder.finish()


def evaluate(
    cases: Sequence[Case],
    folder: ResultsFolder,
    engine,
    parameters,
    propagate_from: str | None = None,
    skipped: Sequence[CaseError] = (),
    progress=None,
    cancel: Callable[[], bool] | None = None,
    clicks: int = 0,
    correction: str | None = None,
) -> dict:
    """Evaluate the cases not yet in ``folder`` in this process, recording each as it finishes; the
    summary.

    ``progress``: see :class:`Recorder`. ``cancel()`` is asked between
    cases: when it returns True, :class:`~.errors.Cancelled` is raised and the folder keeps
    every case finished so far. ``clicks``, ``correction``: see :func:`evaluate_case`.
    """

    recorder = Recorder(cases, folder, parameters, propagate_from, skipped, progress)
    recorder.engine_used(engine_about(engine))
    by_name = {case.name: case for case in cases}
    try:
        for name in recorder.todo:
            if cancel is not None and cancel():
                raise Cancelled()
            recorder.keep(
                evaluate_case(
                    by_name[name],
                    engine,
                    parameters,
                    propagate_from,
                    clicks=clicks,
                    correction=correction,
                )
            )
    finally:
        recorder.progress.close()
    return recorder.finish()
