"""Metrics against values computed by hand, and against SimpleITK's overlap filter."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from SAMZeroShotLib import imaging, metrics


def squares():
    """Reference: 10x10 square (100 px). Prediction: the same square shifted 2 columns right."""
    reference = np.zeros((20, 20), bool)
    predicted = np.zeros((20, 20), bool)
    reference[5:15, 5:15] = True
    predicted[5:15, 7:17] = True
    return predicted, reference


def test_overlap_by_hand():
    predicted, reference = squares()
    scores = metrics.overlap(predicted, reference)
    # TP = 10 x 8 = 80, FP = 20, FN = 20.
    assert scores["dice"] == pytest.approx(160 / 200)
    assert scores["jaccard"] == pytest.approx(80 / 120)
    assert scores["sensitivity"] == pytest.approx(0.8)
    assert scores["precision"] == pytest.approx(0.8)


def test_overlap_matches_simpleitk():
    rng = np.random.default_rng(1)
    predicted = rng.random((8, 30, 30)) > 0.5
    reference = rng.random((8, 30, 30)) > 0.4
    measures = sitk.LabelOverlapMeasuresImageFilter()
    # ITK names the second image the target (the reference).
    measures.Execute(
        sitk.GetImageFromArray(predicted.astype(np.uint8)),
        sitk.GetImageFromArray(reference.astype(np.uint8)),
    )
    scores = metrics.overlap(predicted, reference)
    assert scores["dice"] == pytest.approx(measures.GetDiceCoefficient())
    assert scores["jaccard"] == pytest.approx(measures.GetJaccardCoefficient())
    assert scores["sensitivity"] == pytest.approx(1 - measures.GetFalseNegativeError())


def test_empty_cases_follow_the_documented_convention():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    both_empty = metrics.overlap(empty, empty)
    assert both_empty["dice"] == 1.0 and both_empty["jaccard"] == 1.0
    assert math.isnan(both_empty["sensitivity"]) and math.isnan(both_empty["precision"])
    missed = metrics.overlap(empty, full)  # nothing predicted where something is
    assert missed["dice"] == 0.0 and missed["jaccard"] == 0.0 and missed["sensitivity"] == 0.0
    assert math.isnan(missed["precision"])
    spurious = metrics.overlap(full, empty)
    assert (
        spurious["dice"] == 0.0
        and math.isnan(spurious["sensitivity"])
        and spurious["precision"] == 0.0
    )
    assert math.isnan(metrics.surface_distances(empty, full, (1, 1))["hd95_mm"])


def test_ignored_pixels_are_left_out():
    predicted, reference = squares()
    ignore = np.zeros_like(reference)
    ignore[:, 15:] = True  # hides the 20 false-positive pixels in columns 15-16
    assert metrics.overlap(predicted, reference, ignore)["precision"] == 1.0


def test_surface_distances_of_a_known_shift():
    predicted, reference = squares()
    # Every boundary pixel of one square is 0 or 2 px from the other's boundary; with 0.5 mm pixels
    # the largest is 1 mm. Identical masks are 0 mm apart.
    distances = metrics.surface_distances(predicted, reference, (0.5, 0.5))
    assert 0.0 < distances["mean_surface_distance_mm"] < 1.0
    assert distances["hd95_mm"] == pytest.approx(1.0)
    assert metrics.surface_distances(reference, reference, (0.5, 0.5)) == {
        "hd95_mm": 0.0,
        "mean_surface_distance_mm": 0.0,
    }
    hausdorff = sitk.HausdorffDistanceImageFilter()
    image = lambda m: sitk.GetImageFromArray(m.astype(np.uint8))  # noqa: E731
    hausdorff.Execute(image(predicted), image(reference))
    assert hausdorff.GetHausdorffDistance() == pytest.approx(2.0)  # SimpleITK agrees: 2 px


def test_score_volume_records_slices_means_and_volumes():
    geometry = imaging.slice_geometry(np.diag([1.0, 1.0, 2.0, 1.0]), (3, 20, 20))
    predicted, reference = squares()
    pred = np.zeros((3, 20, 20), bool)
    ref = np.zeros((3, 20, 20), bool)
    pred[1], ref[1] = (
        predicted[::-1, ::-1],
        reference[::-1, ::-1],
    )  # the view flips rows and columns
    pred[2, 0, 0] = True  # a false positive on a slice without reference: listed, not scored
    records = metrics.score_volume({"a": pred}, {"a": ref}, geometry, {"a": "lung"})
    slices = [r for r in records if r["scope"] == "slice" and r["segment"] == "lung"]
    assert [(r["slice"], r["scored"]) for r in slices] == [(1, 1), (2, 0)]
    mean = next(r for r in records if r["scope"] == "slice mean" and r["segment"] == metrics.UNION)
    assert mean["dice"] == pytest.approx(0.8) and mean["scored"] == 1
    volume = next(r for r in records if r["scope"] == "volume" and r["segment"] == "lung")
    assert volume["reference_ml"] == pytest.approx(100 * 2.0 / 1000)
    assert volume["dice"] == pytest.approx(160 / 201)
