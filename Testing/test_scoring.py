"""A case's rows: scores of the union of its segments, and the Dice of the prompt boxes alone."""

from types import SimpleNamespace

import numpy as np
import pytest

from SAMZeroShotLib import imaging, scoring

SHAPE = (3, 20, 20)


def square(s: int, top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[s, top : top + size, left : left + size] = True
    return mask


def test_a_box_filled_from_a_square_prompt_is_the_square():
    geometry = imaging.slice_geometry(np.eye(4), SHAPE, 0)
    reference = square(1, 2, 3, 6)
    dice = scoring.prompt_only_dice(
        {1: reference}, geometry.view(reference), geometry.view(np.zeros(SHAPE, bool)), geometry
    )
    assert dice[1] == 1.0 and len(dice) == 3


def test_case_scores_give_a_row_per_scored_slice_and_the_case_means():
    geometry = imaging.slice_geometry(np.eye(4), SHAPE, 0)
    reference = {1: square(0, 2, 2, 4) | square(1, 2, 2, 4)}
    predicted = square(0, 2, 2, 4) | square(1, 2, 2, 2)  # slice 0 right, slice 1 a quarter
    result = SimpleNamespace(
        masks={1: predicted}, slices=[SimpleNamespace(slice=0), SimpleNamespace(slice=1)]
    )
    ignore = np.zeros(SHAPE, bool)
    rows, case = scoring.case_scores("c", result, reference, reference, ignore, geometry)
    assert [(r["slice"], r["prompted"]) for r in rows] == [(0, 1), (1, 1)]  # slice 2: no label
    assert rows[0]["dice"] == 1.0 and rows[1]["dice"] == pytest.approx(2 * 4 / (16 + 4))
    assert case["mean_dice"] == pytest.approx((1.0 + 0.4) / 2) and case["n_scored_slices"] == 2
    assert case["prompt_only_dice"] == 1.0  # the prompts are the squares themselves
