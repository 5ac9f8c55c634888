"""Prompt strategies on hand-made masks with answers worked out by hand."""

import numpy as np
import pytest

from SAMZeroShotLib import prompts


def c_shape():
    """A 16x16 square (rows/cols 2-17) with a notch (rows 6-13, cols 6-17) open to the right."""
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:18] = True
    mask[6:14, 6:18] = False
    return mask


def test_c_shaped_mask_gets_its_point_moved_inside():
    mask = c_shape()
    # Centroid (9.5, 8.3) truncates to (9, 8): inside the notch, outside the mask.
    assert not mask[9, 8]
    # Rays from (9, 8) cross 4 mask pixels left (cols 2-5), 0 right, 4 up, 4 down: the first of the
    # tied rays, left, wins; its upper median is col 4.
    assert prompts.move_inside(mask, 9, 8) == (9, 4)
    # At (9, 4) the row run is 2 + 1 pixels, the column run 7 above + 8 below: re-centre vertically,
    # 9 + (8 - 7 + 1) // 2 = 10.
    row, col = prompts.positive_point(mask)
    assert (row, col) == (10, 4)
    assert mask[row, col]


def test_point_is_centred_along_the_longer_run():
    mask = np.zeros((10, 30), bool)
    mask[4:7, 3:25] = True  # a horizontal bar: 3 rows, 22 columns
    # Start at (5, 5): 2 pixels left, 19 right, 1 above, 1 below -> horizontal,
    # 5 + (19 - 2 + 1) // 2.
    assert prompts.center_in_mask(mask, 5, 5) == (5, 14)
    assert prompts.positive_point(mask) == (5, 14)


def test_run_reaching_the_border_ends_there():
    mask = np.zeros((6, 6), bool)
    mask[2, :] = True  # touches both borders (the paper's code raises IndexError here)
    assert prompts.center_in_mask(mask, 2, 1) == (2, 3)


def test_point_far_from_every_ray_goes_to_the_nearest_pixel():
    mask = np.zeros((10, 10), bool)
    mask[0, 0] = True
    mask[9, 9] = True
    assert prompts.move_inside(mask, 3, 4) == (0, 0)


def test_paper_prompt_has_one_point_per_segment_a_negative_centre_and_the_union_box():
    right = np.zeros((40, 60), bool)
    left = np.zeros((40, 60), bool)
    right[10:30, 5:20] = True  # rows 10-29, cols 5-19
    left[12:34, 35:55] = True  # rows 12-33, cols 35-54
    [prompt] = prompts.paper_prompts({"R": right, "L": left})
    assert prompt.segments == ("R", "L")
    assert prompt.labels.tolist() == [1, 1, 0]
    # Union box rows 10-33, cols 5-54: exclusive max (34, 55), SAM order x0, y0, x1, y1.
    assert prompt.box.tolist() == [5, 10, 55, 34]
    # Negative point at the centre of that box: row 10 + 24 // 2 = 22, col 5 + 50 // 2 = 30 (x, y).
    assert prompt.points[2].tolist() == [30, 22]
    # Positive points (x, y): right centroid (19.5, 12) -> (19, 12); its column run (9 above + 10
    # below) beats the row run (7 + 7): row 19 + (10 - 9 + 1) // 2 = 20. Left centroid (22.5, 44.5)
    # -> (22, 44); column run 10 + 11 beats row run 9 + 10: row 22 + 1 = 23.
    assert prompt.points[0].tolist() == [12, 20]
    assert prompt.points[1].tolist() == [44, 23]
    assert not prompt.multimask


def test_box_prompt_is_the_masks_box_with_exclusive_ends():
    a = np.zeros((20, 20), bool)
    a[2:5, 3:9] = True
    assert prompts.box_prompt(a).tolist() == [3, 2, 9, 5]


def test_split_keeps_the_union_and_gives_each_pixel_to_the_nearest_segment():
    right = np.zeros((10, 20), bool)
    left = np.zeros((10, 20), bool)
    right[3:7, 2:6] = True
    left[3:7, 14:18] = True
    predicted = np.zeros((10, 20), bool)
    predicted[2:8, 1:19] = True
    parts = prompts.split_among_segments(predicted, {"R": right, "L": left}, ("R", "L"))
    assert np.array_equal(parts["R"] | parts["L"], predicted)
    assert not (parts["R"] & parts["L"]).any()
    assert parts["R"][5, 7] and parts["L"][5, 12]  # each side of the midline goes to its lung


def whole_slice_split(predicted, masks, keys):
    """The partition computed on the whole slice, to check the cropped one against."""
    import SimpleITK as sitk

    maps = [
        sitk.GetArrayFromImage(
            sitk.SignedMaurerDistanceMap(
                sitk.GetImageFromArray(masks[key].astype(np.uint8)),
                insideIsPositive=False,
                squaredDistance=True,
                useImageSpacing=False,
            )
        )
        for key in keys
    ]
    nearest = np.argmin(np.stack(maps), axis=0)
    return {key: predicted & (nearest == number) for number, key in enumerate(keys)}


def test_split_on_the_cropped_box_equals_the_split_on_the_whole_slice():
    generator = np.random.default_rng(7)
    for trial in range(40):
        masks = {}
        for key in ("R", "L", "T"):
            mask = np.zeros((40, 50), bool)
            row, col = generator.integers(0, 36), generator.integers(0, 46)
            # Blocks that touch the slice's edge, overlap each other, or have holes.
            mask[row : row + generator.integers(2, 20), col : col + generator.integers(2, 25)] = (
                True
            )
            mask[generator.integers(0, 40, 30), generator.integers(0, 50, 30)] ^= True
            masks[key] = mask
        predicted = np.zeros((40, 50), bool)
        row, col = generator.integers(0, 30), generator.integers(0, 40)
        predicted[row : row + generator.integers(1, 30), col : col + generator.integers(1, 40)] = (
            True
        )
        cropped = prompts.split_among_segments(predicted, masks, ("R", "L", "T"))
        whole = whole_slice_split(predicted, masks, ("R", "L", "T"))
        for key in masks:
            assert np.array_equal(cropped[key], whole[key]), (trial, key)


def test_empty_mask_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="empty"):
        prompts.positive_point(np.zeros((5, 5), bool))
