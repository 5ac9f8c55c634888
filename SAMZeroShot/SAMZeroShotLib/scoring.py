"""A cohort case's scores: its rows of ``slices.csv`` and ``cases.csv``.

Overlap and distances come from :func:`~.metrics.score_volume` on the union of a case's segments;
each scored slice also gets ``prompt_only_dice`` (the prompt boxes themselves, filled: what the
prompt alone gives) and, with simulated correction clicks, ``dice_by_clicks``.
"""

from __future__ import annotations

import math

import numpy as np

from . import imaging, metrics


def prompt_only_dice(
    prompts, reference_union: np.ndarray, ignore: np.ndarray, geometry
) -> np.ndarray:
    """Per-slice Dice of the prompt itself (each segment's box filled, no model) against the
    reference.

    Arguments:
      prompts: ``{segment: bool mask [K, J, I]}``.
      reference_union, ignore: bool ``[slice, row, column]`` (``geometry.view`` of the masks).
    Returns:
      one Dice per slice of the view.
    """
    from .strategies import fill_boxes

    filled = np.zeros(reference_union.shape, bool)
    views = {key: geometry.view(mask) for key, mask in prompts.items()}
    for s in np.flatnonzero(
        np.logical_or.reduce([view.any(axis=(1, 2)) for view in views.values()])
    ):
        for box in fill_boxes({key: view[s] for key, view in views.items()}).values():
            filled[s] |= box
    return metrics.per_slice_overlap(filled, reference_union, ignore)["dice"]


def case_scores(name: str, result, reference, prompts, ignore, geometry):
    """A case's slice rows (scored slices) and the scores of its case row.

    Arguments:
      result: the :class:`~.pipeline.PipelineResult`; reference, prompts: ``{label: bool mask}``
        and ignore a bool mask, all ``[K, J, I]``; geometry: how the slices were taken.
    Returns:
      ``(slice rows, case row)`` with the columns of :data:`~.results.SLICE_FIELDS` and the scores
      among :data:`~.results.CASE_FIELDS`.
    """
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


def click_scores(slice_rows, case_row, views, result, engine, clicks, correction) -> None:
    """Add ``dice_by_clicks`` to each scored slice's row and the case's means to its row.

    ``views``: ``(voxels, reference, prompts, ignore)`` of the case, ``[K, J, I]`` arrays (the
    masks as ``{label: bool mask}``); ``clicks`` per slice and segment, given as ``correction``
    (:mod:`.corrections`).
    """
    from .corrections import dice_by_clicks

    voxels, reference, prompts, ignore = views
    geometry = result.geometry
    volume_view, ignore_view = geometry.view(voxels), geometry.view(ignore)
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
