"""The simulated user's clicks on hand-made masks whose answer is known."""

import numpy as np
import pytest

from SAMZeroShotLib.corrections import largest_region, next_click
from SAMZeroShotLib.interactive import Click


def square(shape, row0, row1, col0, col1):
    mask = np.zeros(shape, bool)
    mask[row0:row1, col0:col1] = True
    return mask


def test_a_missed_square_gets_an_include_click_at_its_centre():
    reference = square((40, 40), 5, 16, 5, 16)  # 11 x 11: centre (10, 10)
    assert next_click(reference, np.zeros_like(reference)) == Click(10, 10, True)


def test_a_leak_gets_an_exclude_click_at_its_deepest_point():
    reference = square((40, 40), 5, 16, 5, 16)
    predicted = reference | square((40, 40), 20, 29, 22, 31)  # 9 x 9 leak: centre (24, 26)
    assert next_click(reference, predicted) == Click(24, 26, False)


def test_the_largest_error_region_wins_over_the_deeper_kind_total():
    reference = square((60, 60), 0, 60, 0, 30)
    predicted = reference.copy()
    # Two separate misses of 9 + 9 pixels each side of a hole in rows 10-12 ...
    predicted[10:13, 2:5] = False
    predicted[10:13, 20:23] = False
    # ... and one leak of 25 pixels: the single largest region, so it is clicked first.
    predicted[40:45, 40:45] = True
    assert next_click(reference, predicted) == Click(42, 42, False)


def test_a_right_mask_needs_no_click():
    reference = square((20, 20), 2, 9, 2, 9)
    assert next_click(reference, reference.copy()) is None


def test_regions_smaller_than_min_pixels_are_left_alone():
    reference = square((20, 20), 2, 9, 2, 9)
    predicted = reference.copy()
    predicted[4, 4] = False
    assert next_click(reference, predicted, min_pixels=2) is None
    assert next_click(reference, predicted) == Click(4, 4, True)


def test_ignored_pixels_are_never_wrong():
    reference = square((30, 30), 0, 10, 0, 10)
    predicted = reference | square((30, 30), 15, 25, 15, 25)
    ignore = square((30, 30), 15, 25, 15, 25)
    assert next_click(reference, predicted, ignore=ignore) is None


def test_the_image_border_counts_as_outside_the_region():
    # A 9 x 9 miss in the top-left corner: its deepest point is its centre (4, 4), not the
    # corner pixel, which a distance that ignored the border would take for the deepest.
    reference = square((30, 30), 0, 9, 0, 9)
    assert next_click(reference, np.zeros_like(reference)) == Click(4, 4, True)


def test_largest_region_is_four_connected():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # diagonal pixels: three regions of one
    region, size = largest_region(mask)
    assert size == 1 and region[0, 0] and region.sum() == 1


def test_masks_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="2D masks of one shape"):
        next_click(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
