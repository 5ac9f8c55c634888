"""Interactive SAM on one slice: box, clicks and the embedding cache, on the real model and CT."""

import numpy as np
import pytest

from SAMZeroShotLib import imaging, metrics
from SAMZeroShotLib.corrections import dice_by_clicks, next_click
from SAMZeroShotLib.interactive import (
    CORRECTIONS,
    Click,
    SliceEditor,
    click_window,
    depth,
    grown_box,
    local_box,
)
from SAMZeroShotLib.prompts import box_prompt


def test_click_is_a_sam_point():
    click = Click(row=7, col=3, include=False)
    assert click.point == (3.0, 7.0) and click.label == 0


def test_depth_is_the_distance_to_the_nearest_outside_pixel():
    region = np.zeros((7, 7), bool)
    region[1:6, 1:6] = True
    distances = depth(region)
    assert distances[3, 3] == pytest.approx(3.0)
    assert distances[1, 1] == pytest.approx(1.0)
    assert distances[0, 0] == 0.0


@pytest.fixture
def lung_slice(chest):
    """The CTChest4 slice with the most right lung: ``(RGB image, right lung mask)``."""
    voxels, geometry, masks = chest
    right = geometry.view(masks["right"])
    s = int(np.argmax(right.sum(axis=(1, 2))))
    window = imaging.resolve_window("auto", voxels)
    return imaging.to_rgb8(geometry.view(voxels)[s], window), right[s].copy()


def test_a_box_gives_the_lung_and_a_second_box_only_decodes(engine, lung_slice):
    image, lung = lung_slice
    editor = SliceEditor(engine, image)
    mask = editor.set_box(box_prompt(lung))
    assert metrics.overlap(mask, lung)["dice"] > 0.8
    encoded = engine.encoded_slices
    # The same slice again, in a new editor (another segment, say): no encoder call.
    SliceEditor(engine, image.copy()).set_box(box_prompt(lung))
    editor.set_box(box_prompt(lung) + np.array([-2, -2, 2, 2], np.float32))
    assert engine.encoded_slices == encoded


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_every_correction_applies_a_click_and_keeps_the_input(engine, lung_slice, correction):
    image, lung = lung_slice
    before = image.copy()
    editor = SliceEditor(engine, image, correction)
    editor.set_box(box_prompt(lung))
    first = editor.mask.copy()
    row, col = np.argwhere(first)[len(np.argwhere(first)) // 2]
    mask = editor.click(Click(int(row), int(col), include=False))
    assert mask.shape == lung.shape and mask.dtype == bool
    assert editor.clicks == [Click(int(row), int(col), False)]
    assert np.array_equal(image, before)


def test_local_exclude_removes_only_the_leak_under_the_click(engine, lung_slice):
    image, lung = lung_slice
    editor = SliceEditor(engine, image, "local")
    leak = np.zeros_like(lung)
    leak[:12, :12] = True  # a square of "lung" in the corner, far from the lung
    editor.start_from(lung | leak, box_prompt(lung))
    mask = editor.click(Click(5, 5, include=False))
    assert not mask[:12, :12].any()
    assert np.array_equal(mask & ~leak, lung & ~leak)


def test_the_simulated_user_does_not_make_a_good_ct_slice_worse(engine, lung_slice):
    image, lung = lung_slice
    editor = SliceEditor(engine, image)
    first = editor.set_box(box_prompt(lung))
    curve = dice_by_clicks(image, {1: lung}, {1: first}, {1: lung}, engine, 3)
    assert curve[0] == pytest.approx(metrics.overlap(first, lung)["dice"])
    assert len(curve) == 4 and curve[-1] >= curve[0] - 0.005
    assert next_click(lung, first) is not None


def test_an_unknown_correction_is_refused(engine, lung_slice):
    with pytest.raises(ValueError, match="Unknown correction 'brush'"):
        SliceEditor(engine, lung_slice[0], "brush")


def test_an_include_click_outside_the_box_grows_the_box():
    box = np.array([10, 10, 20, 20], np.float32)
    assert grown_box(box, [Click(30, 5, True), Click(40, 40, False)]).tolist() == [5, 10, 20, 31]


def test_the_local_box_is_twice_the_click_distance_to_the_mask():
    mask = np.zeros((100, 100), bool)
    mask[:, :40] = True
    box = local_box(mask, Click(50, 60, True))  # 21 px from column 39: half side 42
    assert box.tolist() == [18.0, 8.0, 100.0, 93.0]


def test_a_bounded_click_changes_only_its_window():
    mask = np.zeros((60, 60), bool)
    mask[:, :30] = True
    # An include click 2 px beside the border (distance 3 to column 29) may change 6 px around it;
    # an exclude click 10 px inside it (distance 10 to column 30), 20 px.
    include = click_window(mask, Click(20, 32, True))
    assert include[20, 26] and include[20, 38] and not include[20, 39] and not include[13, 32]
    exclude = click_window(mask, Click(20, 20, False))
    assert exclude[0, 0] and exclude[40, 40] and not exclude[41, 20]
