"""Cohort evaluation from files: the engine of ``samzeroshot evaluate``.

Images and masks are paired by file stem. Mask label 0 is background, 255 is "ignore" (left
out of scoring and never a prompt), every other label is one prompt segment. An X-ray is one
slice. Outputs (a stable interface, read by scripts outside this project):

* ``slices.csv`` - one row per scored slice (reference has any label): case, slice, dice, jaccard,
  sensitivity, precision, pixel counts, ``prompt_only_dice``; scores are for the union of all segments;
* ``cases.csv`` - one row per case: slice means, volume Dice/Jaccard, HD95, mean surface distance,
  the modality the strategy was told and why;
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, imaging, metrics, voxels
from .results import CaseResult, ResultsFolder

IMAGE_EXTENSIONS = (".nii.gz", ".png", ".jpg", ".jpeg", ".dcm", ".nrrd", ".nii")
MASK_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".png", ".nrrd", ".nii")
IGNORE_LABEL = 255

# LPS (ITK, DICOM) to RAS (Slicer): flip the first two axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class CaseError(ValueError):
    """A bad input file: ``str(error)`` is one line naming the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass
class Case:
    name: str
    image_path: Path
    mask_path: Path


def file_stem(path: Path, extensions: Sequence[str]) -> Optional[str]:
    """The name without its (possibly double) extension, or None if it has none of ``extensions``."""
    lower = path.name.lower()
    for extension in extensions:
        if lower.endswith(extension):
            return path.name[: -len(extension)]
    return None


def pair_cases(images_dir, masks_dir) -> Tuple[List[Case], List[CaseError]]:
    """Cases matched by stem, and one error per image without a mask or mask without an image."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise CaseError(folder, "folder not found")
    images = {file_stem(p, IMAGE_EXTENSIONS): p for p in sorted(images_dir.iterdir()) if p.is_file()}
    masks = {file_stem(p, MASK_EXTENSIONS): p for p in sorted(masks_dir.iterdir()) if p.is_file()}
    images.pop(None, None)
    masks.pop(None, None)
    if not images:
        raise CaseError(images_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)})")
    cases = [Case(stem, images[stem], masks[stem]) for stem in sorted(images) if stem in masks]
    for case in cases:
        if case.image_path.resolve() == case.mask_path.resolve():
            raise CaseError(case.image_path, "is its own mask (--images and --masks name one folder): "
                                             "keep the masks in a folder of their own, or give them another extension")
    problems = [CaseError(images[stem], f"no mask with the same name in {masks_dir}")
                for stem in sorted(images) if stem not in masks]
    problems += [CaseError(masks[stem], f"no image with the same name in {images_dir}")
                 for stem in sorted(masks) if stem not in images]
    return cases, problems


def _ijk_to_ras(image) -> np.ndarray:
    """IJK-to-RAS of a 3D SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = _LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def _as_volume(image):
    """A 2D SimpleITK image as a one-slice 3D image (keeping spacing and origin)."""
    import SimpleITK as sitk

    if image.GetDimension() == 3:
        return image
    if image.GetDimension() != 2:
        raise ValueError(f"{image.GetDimension()}D images are not supported")
    return sitk.JoinSeries([image])


def read_image(path) -> Tuple[np.ndarray, np.ndarray]:
    """Voxels ``[K, J, I]`` (float32; colour becomes luminance) and the IJK-to-RAS matrix.

    DICOM MONOCHROME1 images (white = low values) are inverted so that air is dark, as on a CT.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        photometric = reader.GetMetaData("0028|0004").strip() if reader.HasMetaDataKey("0028|0004") else ""
        image = reader.Execute()
    except RuntimeError as error:
        raise CaseError(path, f"not a readable image ({str(error).strip().splitlines()[-1][:120]})") from None
    components = image.GetNumberOfComponentsPerPixel()
    try:
        image = _as_volume(image)
    except ValueError as error:
        raise CaseError(path, str(error)) from None
    array = sitk.GetArrayFromImage(image)
    if components == 1:
        array = array.astype(np.float32)
    elif components in (3, 4):
        array = imaging.luminance(array[..., :3])
    else:
        raise CaseError(path, f"{components} values per pixel (a 4D or multi-channel image); expected one image")
    if photometric == "MONOCHROME1":
        array = array.max() - array
    return array, _ijk_to_ras(image)


def declared_modality(path) -> Optional[str]:
    """The DICOM Modality (0008,0060) a file records, or None (other formats record none)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader.GetMetaData("0008|0060").strip() if reader.HasMetaDataKey("0008|0060") else None


def read_labels(path, shape) -> np.ndarray:
    """A label array ``[K, J, I]`` (int) of ``shape``: 0 background, 255 ignore, others segments.

    A ``.seg.nrrd`` with several layers (overlapping segments) gets one label per layer and value.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        image = _as_volume(sitk.ReadImage(str(path)))
    except (RuntimeError, ValueError) as error:
        raise CaseError(path, f"not a readable mask ({str(error).strip().splitlines()[-1][:120]})") from None
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if not path.name.lower().endswith(".seg.nrrd"):
            raise CaseError(path, "a colour image, not a label mask: save the labels as one channel")
        layers = np.moveaxis(array, -1, 0).astype(np.int64)
        combined = np.zeros(layers.shape[1:], dtype=np.int64)
        offset = 0
        for layer in layers:
            combined[layer > 0] = layer[layer > 0] + offset
            offset += int(layer.max())
        array = combined
    if tuple(array.shape) != tuple(shape):
        raise CaseError(path, f"mask size {_size(array.shape)} differs from its image's {_size(shape)}")
    if array.dtype.kind == "f":
        if not np.all(array == np.round(array)):
            raise CaseError(path, "not a label mask: it holds non-integer values")
    labels = array.astype(np.int64)
    if not np.any((labels != 0) & (labels != IGNORE_LABEL)):
        raise CaseError(path, "no labels: every pixel is background (0) or ignore (255)")
    return labels


def _size(shape) -> str:
    """``[K, J, I]`` as "I x J x K" pixels, without K for a single slice."""
    dims = list(shape)[::-1]
    return " x ".join(str(d) for d in (dims[:2] if len(dims) == 3 and dims[2] == 1 else dims))


def _voxels(case: Case, image: np.ndarray, ijk_to_ras: np.ndarray, fill_nonfinite: bool):
    """``(voxels to use, slice geometry, notes)``; bad voxels raise :class:`CaseError`."""
    geometry = imaging.slice_geometry(ijk_to_ras, image.shape)
    try:
        image, notes = voxels.checked(image, geometry, fill=fill_nonfinite)
    except voxels.BadVoxels as error:
        raise CaseError(case.image_path, str(error)) from None
    return image, geometry, notes


def check_case(case: Case, fill_nonfinite: bool = False) -> None:
    """Read a case once to find bad input before any time is spent on the model.

    The arrays are dropped and read again when the case is segmented: holding every case of a
    cohort in memory (some 140 MB per CT) would cost more than reading twice.
    """
    image, ijk_to_ras = read_image(case.image_path)
    _voxels(case, image, ijk_to_ras, fill_nonfinite)
    read_labels(case.mask_path, image.shape)


def prompt_only_dice(prompts, reference_union: np.ndarray, ignore: np.ndarray, geometry) -> np.ndarray:
    """Per-slice Dice of the prompt itself (each segment's box filled, no model) against the reference."""
    from .strategies import fill_boxes

    filled = np.zeros(reference_union.shape, bool)
    views = {key: geometry.view(mask) for key, mask in prompts.items()}
    for s in np.flatnonzero(np.logical_or.reduce([view.any(axis=(1, 2)) for view in views.values()])):
        for box in fill_boxes({key: view[s] for key, view in views.items()}).values():
            filled[s] |= box
    return metrics.per_slice_overlap(filled, reference_union, ignore)["dice"]


def evaluate_case(case: Case, engine, strategy: str, window: str, cancel=None, propagate_from: Optional[str] = None,
                  fill_nonfinite: bool = False, modality: str = "auto") -> CaseResult:
    """Segment one case and score it.

    Each row also carries ``prompt_only_dice``: the Dice of the prompt boxes themselves, filled,
    a baseline that costs no model call.
    """
    from . import modality as modalities, pipeline

    started = time.perf_counter()
    volume, ijk_to_ras = read_image(case.image_path)
    volume, geometry, notes = _voxels(case, volume, ijk_to_ras, fill_nonfinite)
    labels = read_labels(case.mask_path, volume.shape)
    segment_labels = [int(v) for v in np.unique(labels) if v not in (0, IGNORE_LABEL)]
    reference = {value: labels == value for value in segment_labels}
    ignore = labels == IGNORE_LABEL
    prompts = reference
    if propagate_from is not None:
        prompts = pipeline.keep_slices(reference, geometry, pipeline.annotated_slices(reference, geometry, propagate_from))
    modality, reason = modalities.decide(modality, geometry.view(volume), declared_modality(case.image_path))
    result = pipeline.segment_volume(volume, geometry, prompts, engine, strategy=strategy, window=window,
                                     cancel=cancel, propagate=propagate_from is not None, modality=modality)
    predicted_union = geometry.view(np.logical_or.reduce(list(result.masks.values())))
    reference_union = geometry.view(np.logical_or.reduce(list(reference.values())))
    ignore_view = geometry.view(ignore)
    scores = metrics.per_slice_overlap(predicted_union, reference_union, ignore_view)
    baseline = prompt_only_dice(prompts, reference_union, ignore_view, geometry)
    prompted = {outcome.slice for outcome in result.slices}
    scored = np.flatnonzero(scores["reference_pixels"] > 0)
    slice_rows = [{"case": case.name, "slice": int(s),
                   **{name: float(scores[name][s]) for name in metrics.SLICE_COLUMNS},
                   "reference_pixels": int(scores["reference_pixels"][s]),
                   "predicted_pixels": int(scores["predicted_pixels"][s]),
                   "prompted": int(s in prompted), "prompt_only_dice": float(baseline[s])} for s in scored]
    spacing = (geometry.slice_spacing,) + tuple(geometry.pixel_spacing)
    keep = ~ignore_view
    pred, ref = predicted_union & keep, reference_union & keep
    distances = metrics.surface_distances(pred, ref, spacing)
    whole = metrics.overlap(pred, ref)
    case_row = {"case": case.name, "n_scored_slices": len(scored), "n_segmented_slices": len(result.slices),
                "mean_dice": float(np.mean([r["dice"] for r in slice_rows])) if slice_rows else math.nan,
                "mean_jaccard": float(np.mean([r["jaccard"] for r in slice_rows])) if slice_rows else math.nan,
                "volume_dice": whole["dice"], "volume_jaccard": whole["jaccard"], **distances,
                "n_segments": len(segment_labels), "seconds": time.perf_counter() - started,
                "prompt_only_dice": float(np.mean(baseline[scored])) if len(scored) else math.nan,
                "modality": modality, "modality_reason": reason}
    return CaseResult(case.name, slice_rows, case_row, notes)


def prepare(images_dir, masks_dir, keep_going: bool = False,
            fill_nonfinite: bool = False) -> Tuple[List[Case], List[CaseError]]:
    """Pair and read every case once: ``(usable cases, problems)``, before any time goes to the model.

    Raises the first :class:`CaseError` unless ``keep_going``; raises when nothing is usable.
    """
    cases, problems = pair_cases(images_dir, masks_dir)
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
        raise CaseError(images_dir, "no usable image/mask pairs")
    return good, problems


def run_settings(parameters, images_dir, masks_dir, propagate_from: Optional[str] = None) -> dict:
    """What an evaluation's results depend on: a results folder made with other settings is not resumed.

    A setting added to :class:`~.parameters.Parameters` that changes results goes in here too.
    """
    from .models import checkpoint_sha256
    from .strategies import resolve

    return {
        "model": parameters.model,
        "checkpoint_sha256": checkpoint_sha256(parameters.model, parameters.checkpoint),
        "strategy": resolve(parameters.strategy, parameters.model)[0],
        "window": parameters.window,
        "modality": parameters.modality,
        "precision": parameters.precision,
        "propagate_from": propagate_from,
        "fill_nonfinite": parameters.fill_nonfinite,
        "images": str(Path(images_dir).resolve()),
        "masks": str(Path(masks_dir).resolve()),
        "version": __version__,
    }


def evaluate(cases: Sequence[Case], folder: ResultsFolder, engine, parameters,
             propagate_from: Optional[str] = None, skipped: Sequence[CaseError] = (),
             progress: Optional[Callable[[float, str], None]] = None,
             cancel: Optional[Callable[[], bool]] = None,
             log: Optional[Callable[[str], None]] = None) -> dict:
    """Evaluate the cases not yet in ``folder``, recording each as it finishes; the summary.

    ``cancel()`` is asked between cases: when it returns True, :class:`~.pipeline.Cancelled` is
    raised and the folder keeps every case finished so far.
    """
    from .pipeline import Cancelled
    from .strategies import resolve

    strategy_name, _ = resolve(parameters.strategy, engine.model.spec.name)
    about = {"model": engine.model.spec.name, "strategy": strategy_name, "window": parameters.window,
             "modality": parameters.modality, "propagate_from": propagate_from, "device": engine.device, "precision": engine.precision,
             "backend": engine.backend}
    todo = folder.plan([case.name for case in cases], [{"file": p.path, "problem": p.problem} for p in skipped], about)
    report = progress or (lambda fraction, message: None)
    say = log or (lambda line: None)
    if len(todo) < len(cases):
        say(f"resuming: {len(cases) - len(todo)} of {len(cases)} cases are already in {folder.folder}")
    by_name = {case.name: case for case in cases}
    for number, name in enumerate(todo, 1):
        if cancel is not None and cancel():
            raise Cancelled()
        result = evaluate_case(by_name[name], engine, strategy_name, parameters.window,
                               propagate_from=propagate_from, fill_nonfinite=parameters.fill_nonfinite,
                               modality=parameters.modality)
        folder.record(result)
        row = result.case_row
        for note in result.notes:
            say(f"{name}: {note}")
        say(f"case {len(folder.results)}/{len(cases)} {name}: mean Dice {row['mean_dice']:.4f} over "
            f"{row['n_scored_slices']} slices ({row['seconds']:.1f} s)")
        report(number / len(todo), f"{name}: mean Dice {row['mean_dice']:.4f}")
    return folder.finish()
