"""Overlap and surface-distance metrics.

Conventions (stated once, used everywhere):

* Dice and Jaccard of two empty masks are 1.0 (perfect agreement on "nothing there"); an empty
  mask against a non-empty one scores 0.0.
* Sensitivity is undefined (NaN) when the reference is empty; precision is undefined (NaN) when
  the prediction is empty.
* Surface distances are in millimetres and NaN when either mask is empty. HD95 is the 95th
  percentile and the mean surface distance the mean of the symmetric set of boundary distances
  (both directions pooled).
* Pixels marked "ignore" are removed from both masks before counting.
* Paper convention for summaries: the mean over *scored* slices, i.e. slices where the reference
  has any label.

Overlap comes from confusion counts summed with NumPy over whole stacks of slices at once, which
also settles the empty cases above; surface distances use SimpleITK's contour and Maurer distance
filters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_counts(
    predicted: np.ndarray, reference: np.ndarray, axes=None, ignore: np.ndarray | None = None
):
    """True-positive, false-positive and false-negative counts, summed over ``axes``."""
    predicted = np.asarray(predicted, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"Prediction {predicted.shape} and reference {reference.shape} differ in shape."
        )
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        predicted, reference = predicted & keep, reference & keep
    tp = np.count_nonzero(predicted & reference, axis=axes)
    fp = np.count_nonzero(predicted & ~reference, axis=axes)
    fn = np.count_nonzero(~predicted & reference, axis=axes)
    return (
        np.asarray(tp, dtype=np.int64),
        np.asarray(fp, dtype=np.int64),
        np.asarray(fn, dtype=np.int64),
    )


def _ratio(numerator, denominator, when_empty):
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = numerator / denominator
    return np.where(denominator == 0, when_empty, value)


def overlap_from_counts(tp, fp, fn) -> dict[str, np.ndarray]:
    """Dice, Jaccard, sensitivity and precision from counts (arrays broadcast)."""
    tp, fp, fn = (np.asarray(x, dtype=np.int64) for x in (tp, fp, fn))
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "jaccard": _ratio(tp, tp + fp + fn, 1.0),
        "sensitivity": _ratio(tp, tp + fn, np.nan),
        "precision": _ratio(tp, tp + fp, np.nan),
    }


def overlap(
    predicted: np.ndarray, reference: np.ndarray, ignore: np.ndarray | None = None
) -> dict[str, float]:
    """Overlap scores of two masks of any dimension, as plain floats."""
    scores = overlap_from_counts(*confusion_counts(predicted, reference, ignore=ignore))
    return {name: float(value) for name, value in scores.items()}


def per_slice_overlap(
    predicted: np.ndarray, reference: np.ndarray, ignore: np.ndarray | None = None
):
    """Scores of every slice of ``[slice, row, col]`` stacks, plus pixel counts of both masks."""
    tp, fp, fn = confusion_counts(predicted, reference, axes=(1, 2), ignore=ignore)
    scores = overlap_from_counts(tp, fp, fn)
    scores["reference_pixels"] = tp + fn
    scores["predicted_pixels"] = tp + fp
    return scores


def surface_distances(
    predicted: np.ndarray, reference: np.ndarray, spacing: Sequence[float]
) -> dict[str, float]:
    """HD95 and mean surface distance in mm between two masks (2D or 3D, array axis order).

    ``spacing`` is the pixel size along each array axis. Boundary pixels come from SimpleITK's
    ``LabelContour``; distances from ``SignedMaurerDistanceMap`` of the other mask's boundary.
    """
    import SimpleITK as sitk

    predicted = np.asarray(predicted, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    # A one-pixel-thick axis (an X-ray as a one-slice volume) is dropped: distances in the plane.
    kept = [axis for axis, size in enumerate(predicted.shape) if size > 1]
    if len(kept) < predicted.ndim:
        spacing = [spacing[axis] for axis in kept]
        predicted, reference = (
            predicted.reshape([predicted.shape[a] for a in kept]),
            reference.reshape([reference.shape[a] for a in kept]),
        )
    if not predicted.any() or not reference.any():
        return {"hd95_mm": float("nan"), "mean_surface_distance_mm": float("nan")}

    def image(mask):
        result = sitk.GetImageFromArray(mask.astype(np.uint8))
        result.SetSpacing([float(s) for s in reversed(spacing)])  # SimpleITK wants x, y, z
        return result

    contours = [
        sitk.LabelContour(image(mask), fullyConnected=True) for mask in (predicted, reference)
    ]
    on_contour = [sitk.GetArrayViewFromImage(contour) > 0 for contour in contours]

    def distances_to(contour):
        distance = sitk.SignedMaurerDistanceMap(
            contour, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        return np.abs(sitk.GetArrayFromImage(distance))

    # Each contour's pixels measured to the other contour, both ways, pooled.
    pooled = np.concatenate(
        [distances_to(contours[1])[on_contour[0]], distances_to(contours[0])[on_contour[1]]]
    )
    return {
        "hd95_mm": float(np.percentile(pooled, 95)),
        "mean_surface_distance_mm": float(pooled.mean()),
    }


def volume_ml(mask: np.ndarray, voxel_volume_mm3: float) -> float:
    """Volume of a mask in millilitres."""
    return float(np.count_nonzero(mask)) * voxel_volume_mm3 / 1000.0


UNION = "all segments"  # name of the union of all segments in records
SLICE_COLUMNS = ("dice", "jaccard", "sensitivity", "precision")
DISTANCE_COLUMNS = ("hd95_mm", "mean_surface_distance_mm")


def score_volume(
    predicted: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    geometry,
    names: dict[str, str] | None = None,
    ignore: np.ndarray | None = None,
    surface: bool = True,
    union_only: bool = False,
):
    """Records of every metric, per slice and per volume, for each segment and their union.

    ``predicted``/``reference`` map segment keys to bool arrays in the volume's layout;
    ``geometry`` (an :class:`imaging.SliceGeometry`) gives the slices and the spacing. Returns a
    list of dicts with ``scope`` = ``slice`` (slices where reference or prediction has any
    pixel; ``scored`` = 1 where the reference has any label), ``slice mean`` (the paper's
    mean over scored slices) or ``volume``. ``union_only``: records of the union of all
    segments only (what a cohort's tables keep).
    """
    names = names or {key: str(key) for key in predicted}
    keys = list(predicted)
    views_pred = {key: geometry.view(predicted[key]) for key in keys}
    views_ref = {key: geometry.view(reference[key]) for key in keys}
    views_pred[UNION] = np.logical_or.reduce([views_pred[key] for key in keys])
    views_ref[UNION] = np.logical_or.reduce([views_ref[key] for key in keys])
    names = dict(names, **{UNION: UNION})
    ignore_view = geometry.view(ignore) if ignore is not None else None
    spacing = (geometry.slice_spacing,) + tuple(geometry.pixel_spacing)
    voxel_mm3 = float(np.prod(spacing))
    slice_records, summary_records = [], []
    for key in ([] if union_only else keys) + [UNION]:
        pred, ref = views_pred[key], views_ref[key]
        scores = per_slice_overlap(pred, ref, ignore_view)
        slice_records += _slice_records(scores, names[key])
        scored = scores["reference_pixels"] > 0
        mean = {"scope": "slice mean", "segment": names[key], "scored": int(scored.sum())}
        for column in SLICE_COLUMNS:
            values = scores[column][scored]
            mean[column] = (
                float(np.nanmean(values))
                if values.size and not np.all(np.isnan(values))
                else float("nan")
            )
        summary_records.append(mean)
        keep_pred = pred if ignore_view is None else pred & ~ignore_view
        keep_ref = ref if ignore_view is None else ref & ~ignore_view
        volume = {"scope": "volume", "segment": names[key], "scored": int(scored.sum())}
        volume.update(overlap(keep_pred, keep_ref))
        if surface:
            volume.update(surface_distances(keep_pred, keep_ref, spacing))
        volume["reference_ml"] = volume_ml(keep_ref, voxel_mm3)
        volume["predicted_ml"] = volume_ml(keep_pred, voxel_mm3)
        summary_records.append(volume)
    return slice_records + summary_records


def _slice_records(scores: dict[str, np.ndarray], segment: str) -> list[dict]:
    """One record per slice where the reference or the prediction has any pixel."""
    records = []
    present = np.flatnonzero((scores["reference_pixels"] > 0) | (scores["predicted_pixels"] > 0))
    for s in present:
        record = {
            "scope": "slice",
            "slice": int(s),
            "segment": segment,
            "scored": int(scores["reference_pixels"][s] > 0),
        }
        record.update({column: float(scores[column][s]) for column in SLICE_COLUMNS})
        record["reference_pixels"] = int(scores["reference_pixels"][s])
        record["predicted_pixels"] = int(scores["predicted_pixels"][s])
        records.append(record)
    return records
