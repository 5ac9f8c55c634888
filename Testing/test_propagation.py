"""Propagation on hand-made volumes with a known answer: which slices a simulated user annotates,
the walks between and beyond them, how they are joined, and the stops they report.

The model here is a stand-in that returns the true mask inside the prompt's box (or, on a real
volume, the dark pixels inside it), so every difference from the truth comes from the walk.
"""

from dataclasses import replace

import numpy as np
import pytest

from SAMZeroShotLib import imaging, pipeline, propagation
from SAMZeroShotLib.errors import SettingError
from SAMZeroShotLib.propagation import Rules, Stop
from SAMZeroShotLib.volumes import Volume

SIZE = 40


def disc(centre, radius, size=SIZE):
    rows, cols = np.mgrid[:size, :size]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def box_of(mask):
    filled = np.zeros(mask.shape, bool)
    if mask.any():
        r0, c0, r1, c1 = propagation.bounding_box(mask)
        filled[r0:r1, c0:c1] = True
    return filled


class TruthInBox:
    """A :class:`~SAMZeroShotLib.propagation.SliceModel` that returns ``truth[s][key]`` inside
    the prompt's box; images are 50 inside any true mask and 200 elsewhere (or ``images``)."""

    def __init__(self, truth, images=None):
        self.truth, self.images = truth, images or {}
        self.calls = []

    def segment(self, s, prompts, small):
        self.calls.append((s, tuple(prompts), small))
        empty = np.zeros((SIZE, SIZE), bool)
        return {key: self.truth[s].get(key, empty) & box_of(p) for key, p in prompts.items()}

    def image(self, s):
        if s in self.images:
            return self.images[s]
        image = np.full((SIZE, SIZE), 200, np.uint8)
        for mask in self.truth[s].values():
            image[mask] = 50
        return image


def walk(truth, annotated_slices, rules=None, model=None):
    model = model or TruthInBox(truth)
    annotated = {s: dict(truth[s]) for s in annotated_slices}
    return propagation.walk_volume(len(truth), annotated, annotated, model, rules), model


def two_lungs(n=30, right=(0, 29), left=(5, 24)):
    """Two discs, ``right`` and ``left``, on the slices in their ranges (inclusive)."""
    truth = []
    for s in range(n):
        masks = {}
        if right[0] <= s <= right[1]:
            masks["right"] = disc((20, 10), 6)
        if left[0] <= s <= left[1]:
            masks["left"] = disc((20, 30), 6)
        truth.append(masks)
    return truth


# -- which slices a simulated user annotates -----------------------------------------------


@pytest.fixture
def labelled_10_to_29():
    """Labels on slices 10-29 of 40 (axial, identity geometry); the largest area on slice 14."""
    shape = (40, 8, 8)
    mask = np.zeros(shape, bool)
    mask[10:30, 2:5, 2:5] = True
    mask[14, :, :] = True
    geometry = imaging.slice_geometry(np.eye(4), shape)
    return {1: mask}, geometry


@pytest.mark.parametrize(
    "which, expected",
    [
        ("middle", [14]),
        ("1", [20]),
        (2, [15, 25]),
        ("3", [13, 20, 26]),
        ("5", [12, 16, 20, 24, 28]),
        ("25", list(range(10, 30))),
    ],
)
def test_k_annotated_slices_are_evenly_spaced_among_the_labelled(
    labelled_10_to_29, which, expected
):
    masks, geometry = labelled_10_to_29
    assert propagation.annotated_slices(masks, geometry, which) == expected


@pytest.mark.parametrize("which", ["0", "-2", "top", "1.5"])
def test_an_unknown_annotated_slice_choice_is_refused(labelled_10_to_29, which):
    masks, geometry = labelled_10_to_29
    with pytest.raises(SettingError, match="'middle' or a number"):
        propagation.annotated_slices(masks, geometry, which)


def test_walks_go_outward_from_the_ends_and_both_ways_across_each_gap():
    assert propagation.walks_for([5, 10, 11, 20], 30) == [
        (5, -1, 0),
        (20, +1, 29),
        (5, +1, 9),
        (10, -1, 6),
        (11, +1, 19),
        (20, -1, 12),
    ]
    assert propagation.walks_for([0], 5) == [(0, +1, 4)]
    assert propagation.walks_for([], 5) == []


# -- the walk and its join -------------------------------------------------------------------


def test_the_walk_from_one_slice_reaches_both_ends_of_each_segment():
    truth = two_lungs()
    result, _ = walk(truth, [15])
    for s in range(30):
        assert set(result.masks[s]) == set(truth[s]), s
        for key, mask in truth[s].items():
            assert np.array_equal(result.masks[s][key], mask), (s, key)


def test_between_two_annotated_slices_each_slice_takes_the_nearer_side():
    # The right segment has a second piece on slices 16-20 only, far from the first piece: the
    # walk up from 10 never sees it, the walk down from 20 carries it to 16 (and loses nothing
    # else). Joined by the nearer side, every slice is right.
    truth = two_lungs()
    for s in range(16, 21):
        truth[s]["right"] = truth[s]["right"] | disc((5, 35), 3)
    result, model = walk(truth, [10, 20])
    for s in range(10, 21):
        assert np.array_equal(result.masks[s]["right"], truth[s]["right"]), s
    # The walk from 10 alone would have missed the piece on 16-19.
    assert result.masks[16]["right"][disc((5, 35), 3)].all()
    # Both walks crossed the whole gap: slice 15 was segmented from below and from above.
    assert [c[0] for c in model.calls].count(15) == 2


class FailsOnFirstVisit(TruthInBox):
    """Returns a stray piece for ``key`` the first time slice ``s`` is segmented."""

    def __init__(self, truth, s, key):
        super().__init__(truth)
        self.failing = (s, key)

    def segment(self, s, prompts, small):
        masks = super().segment(s, prompts, small)
        if (s, self.failing[1]) == self.failing and self.failing[1] in masks:
            masks[self.failing[1]] = disc((3, 3), 2)
            self.failing = None, None
        return masks


def test_a_walk_that_stops_in_a_gap_is_covered_by_the_other_side():
    # The walk up from 10 (which runs first) loses the left segment on slice 13; the walk down
    # from 20 carries it to 11, so slices 13-15 keep it from there.
    truth = two_lungs()
    result, _ = walk(truth, [10, 20], Rules(patience=0), FailsOnFirstVisit(truth, 13, "left"))
    for s in range(10, 21):
        assert np.array_equal(result.masks[s]["left"], truth[s]["left"]), s
    [stop] = [stop for stop in result.stops if stop.slice == 13]
    assert (stop.segment, stop.start, stop.reason, stop.covered) == (
        "left",
        10,
        "low overlap",
        True,
    )
    assert stop.describe().endswith("covered by the walk from the other side")


# -- stops -----------------------------------------------------------------------------------


def test_each_stop_says_which_segment_stopped_where_and_that_the_other_went_on():
    truth = two_lungs()  # right on 0-29, left on 5-24
    result, _ = walk(truth, [15])
    stops = {(stop.segment, stop.direction): stop for stop in result.stops}
    assert set(stops) == {("left", -1), ("left", +1)}  # the right lung reached both volume ends
    down, up = stops["left", -1], stops["left", +1]
    assert (down.slice, down.reason, down.others_to) == (4, "empty", 0)
    assert (up.slice, up.reason, up.others_to) == (25, "empty", 29)
    assert not down.covered
    assert propagation.describe_stops(result.stops, {"left": "left lung"}) == (
        "left lung: walk down from 15 stopped at 4 (empty: no pixels), while the other segments"
        " went on to 0; left lung: walk up from 15 stopped at 25 (empty: no pixels), while the"
        " other segments went on to 29"
    )
    # Where it stopped (no pixels), it kept nothing.
    assert all("left" not in result.masks[s] for s in list(range(5)) + list(range(25, 30)))


def test_a_segment_that_slides_onto_brighter_tissue_stops_there():
    truth = two_lungs()
    images = {}
    for s in range(20, 30):  # from slice 20 up, the left "lung" the model returns is bright
        image = TruthInBox(truth).image(s)
        image[truth[s].get("left", np.zeros((SIZE, SIZE), bool))] = 150
        images[s] = image
    result, _ = walk(truth, [15], Rules(max_intensity_shift=40), TruthInBox(truth, images))
    [stop] = [s for s in result.stops if s.segment == "left" and s.direction > 0]
    assert (stop.slice, stop.reason) == (20, "intensity shift")
    assert stop.detail == "100 > 40 grey levels"


def test_a_segment_that_creeps_onto_soft_tissue_stops_where_it_is_bright():
    # Below slice 15 the right "lung" brightens by 30 grey levels a slice: each step is within
    # the shift limit, but from slice 10 its mean (200 + 30) is above the brightness limit.
    truth = two_lungs()
    images = {}
    for s in range(15):
        image = TruthInBox(truth).image(s)
        image[truth[s]["right"]] = min(255, 50 + 30 * (15 - s))
        images[s] = image
    rules = Rules(max_intensity_shift=40, max_grey=200)
    result, _ = walk(truth, [20], rules, TruthInBox(truth, images))
    [stop] = [s for s in result.stops if s.segment == "right" and s.direction < 0]
    assert (stop.slice, stop.reason) == (9, "bright")
    assert stop.detail == "mean grey level 230 > 200"
    assert all("right" not in result.masks[s] for s in range(10))
    assert all("right" in result.masks[s] for s in range(10, 20))
    no_limit, _ = walk(truth, [20], replace(rules, max_grey=0), TruthInBox(truth, images))
    assert all("right" in no_limit.masks[s] for s in range(20))


class LeaksOnFirstVisit(TruthInBox):
    """The first time slice ``s`` is segmented, ``key``'s mask spreads over ``leak`` (and loses
    ``lost`` of the true mask)."""

    def __init__(self, truth, s, key, leak, lost=None):
        super().__init__(truth)
        self.leaking, self.leak, self.lost = (s, key), leak, lost

    def segment(self, s, prompts, small):
        masks = super().segment(s, prompts, small)
        key = self.leaking[1]
        if (s, key) == self.leaking and key in prompts:
            lost = self.lost if self.lost is not None else np.zeros((SIZE, SIZE), bool)
            masks[key] = (self.truth[s][key] | self.leak) & ~lost
            self.leaking = None, None
        return masks


def test_where_a_segment_stops_it_keeps_its_part_inside_the_neighbours_mask():
    # Walking down from 20, the right "lung" spreads on slice 10 to four times its neighbour's
    # area: it stops there, keeping the part inside slice 11's mask (the true disc), nothing below.
    truth = two_lungs()
    model = LeaksOnFirstVisit(truth, 10, "right", disc((20, 10), 12))
    result, _ = walk(truth, [20], Rules(), model)
    [stop] = [s for s in result.stops if s.segment == "right" and s.direction < 0]
    assert (stop.slice, stop.reason, stop.kept) == (10, "grew", int(truth[10]["right"].sum()))
    assert np.array_equal(result.masks[10]["right"], truth[10]["right"])
    assert all("right" not in result.masks[s] for s in range(10))
    assert "keeping there its 113 px inside the neighbour's mask" in stop.describe()
    # Without the rule it keeps nothing where it stopped.
    model = LeaksOnFirstVisit(truth, 10, "right", disc((20, 10), 12))
    result, _ = walk(truth, [20], Rules(keep_at_stop=False), model)
    [stop] = [s for s in result.stops if s.segment == "right" and s.direction < 0]
    assert (stop.slice, stop.kept) == (10, 0)
    assert all("right" not in result.masks[s] for s in range(11))


def test_a_segment_stopped_for_brightness_keeps_nothing_there():
    # On slice 10 the right "lung" takes in a bright ring (255) around a grey disc (190): its
    # mean is above the limit; the disc alone, inside the neighbour's mask, is not, but is no lung.
    truth = two_lungs()
    ring = disc((20, 10), 8) & ~disc((20, 10), 6)
    image = TruthInBox(truth).image(10)
    image[truth[10]["right"]], image[ring] = 190, 255
    model = LeaksOnFirstVisit(truth, 10, "right", ring)
    model.images = {10: image}
    result, _ = walk(truth, [20], Rules(max_intensity_shift=255, max_grey=200), model)
    [stop] = [s for s in result.stops if s.segment == "right" and s.direction < 0]
    assert (stop.slice, stop.reason, stop.kept) == (10, "bright", 0)
    assert all("right" not in result.masks[s] for s in range(11))


def test_a_part_kept_where_a_walk_stopped_gives_way_to_the_other_sides_whole_mask():
    # In the gap 10-20 the walk up from 10 stops on 13 keeping the lower half of the left disc;
    # the walk down from 20 carried the whole disc there, and slice 13 takes that.
    truth = two_lungs()
    upper = np.zeros((SIZE, SIZE), bool)
    upper[:20] = True
    model = LeaksOnFirstVisit(truth, 13, "left", disc((20, 30), 16), lost=upper)
    result, _ = walk(truth, [10, 20], Rules(), model)
    [stop] = [s for s in result.stops if s.slice == 13]
    assert (stop.segment, stop.reason, stop.covered) == ("left", "grew", True)
    assert 0 < stop.kept < truth[13]["left"].sum()
    for s in range(10, 21):
        assert np.array_equal(result.masks[s]["left"], truth[s]["left"]), s


@pytest.mark.parametrize(
    "mask, rules, reason",
    [
        (np.zeros((SIZE, SIZE), bool), Rules(), "empty"),
        (disc((20, 20), 1), Rules(min_area=0.1), "small area"),
        (disc((20, 5), 4), Rules(min_overlap=0.5), "low overlap"),
        (disc((20, 20), 12), Rules(max_growth=2), "grew"),
        (disc((20, 20), 8), Rules(max_intensity_shift=10), "intensity shift"),
        (disc((20, 20), 8), Rules(max_grey=60), "bright"),
    ],
)
def test_stop_reason_names_the_rule_broken(mask, rules, reason):
    previous = disc((20, 20), 8)
    image = np.full((SIZE, SIZE), 50, np.uint8)
    image[20:, :] = 100  # half of the mask is brighter: its mean moves 25 grey levels
    why = propagation.stop_reason(mask, previous, image, (int(previous.sum()), 50.0), rules)
    assert why is not None and why[0] == reason


def test_a_mask_within_every_rule_carries_on():
    previous = disc((20, 20), 8)
    image = np.full((SIZE, SIZE), 50, np.uint8)
    assert propagation.stop_reason(disc((20, 21), 8), previous, image, (200, 50.0), Rules()) is None


def test_the_annotated_intensity_rule_compares_with_the_annotated_slice():
    # Grey levels drift by 10 a slice: step by step within 40, from the annotated slice not.
    truth = two_lungs(right=(0, 29), left=(40, 40))
    images = {}
    for s in range(30):
        image = np.full((SIZE, SIZE), 250, np.uint8)
        image[truth[s]["right"]] = 10 + 5 * s
        images[s] = image
    model = TruthInBox(truth, images)
    rules = Rules(max_intensity_shift=40, patience=0)
    neighbour, _ = walk(truth, [0], replace(rules, intensity_from="neighbour"), model)
    annotated, _ = walk(truth, [0], replace(rules, intensity_from="annotated"), model)
    assert not neighbour.stops
    [stop] = annotated.stops
    assert (stop.slice, stop.reason) == (9, "intensity shift")
    with pytest.raises(SettingError, match="intensity_from"):
        Rules(intensity_from="first")


def test_small_pieces_are_sent_to_the_small_piece_view():
    truth = two_lungs()
    _, model = walk(truth, [15], Rules(small_piece=int(disc((20, 20), 6).sum()) + 1))
    assert all(small for _, _, small in model.calls)
    _, model = walk(truth, [15], Rules(small_piece=0))
    assert not any(small for _, _, small in model.calls)


# -- the whole pipeline on a volume ----------------------------------------------------------


class DarkInBox:
    """A strategy: the dark pixels (lung-window grey under 128) inside each prompt's box."""

    name = "dark-in-box"

    def segment(self, image, masks, engine, modality="ct"):
        return {key: box_of(mask) & (image[..., 0] < 128) for key, mask in masks.items()}


class NoEngine:
    workers = 1

    class model:  # noqa: N801 (what the pipeline reads of an engine's model)
        class spec:  # noqa: N801
            name = "none"


@pytest.fixture
def dark_lungs():
    """A CT in HU: body at 40, two air-filled "lungs" (-800) on slices 3-16 and 6-13 of 20."""
    volume = np.full((20, SIZE, SIZE), 40.0, np.float32)
    truth = {"right": np.zeros(volume.shape, bool), "left": np.zeros(volume.shape, bool)}
    for s in range(20):
        if 3 <= s <= 16:
            truth["right"][s] = disc((20, 10), 4 + min(s - 3, 16 - s) // 2)
        if 6 <= s <= 13:
            truth["left"][s] = disc((20, 30), 4)
    volume[truth["right"] | truth["left"]] = -800.0
    volume[:, 0, 0] = -1000.0  # air outside the body, on every slice
    return volume, imaging.slice_geometry(np.eye(4), volume.shape), truth


def test_segment_volume_propagates_from_k_slices_and_reports_the_stops(dark_lungs):
    volume, geometry, truth = dark_lungs
    given = {key: mask.copy() for key, mask in truth.items()}
    slices = propagation.annotated_slices(truth, geometry, 2)
    kept = propagation.keep_slices(truth, geometry, slices)
    result = pipeline.segment_volume(
        Volume(volume, np.eye(4)), geometry, kept, NoEngine(), strategy=DarkInBox(), propagate=True
    )
    for key in truth:
        assert np.array_equal(result.masks[key], truth[key]), key
    assert all(np.array_equal(given[key], truth[key]) for key in truth)  # inputs untouched
    ends = {(stop.segment, stop.slice) for stop in result.stops}
    view = geometry.view(truth["left"]).any(axis=(1, 2))
    first, last = np.flatnonzero(view)[[0, -1]]
    assert ("left", first - 1) in ends and ("left", last + 1) in ends
    assert all(isinstance(stop, Stop) for stop in result.stops)


def test_propagate_takes_any_set_of_annotated_slices(dark_lungs):
    volume, geometry, truth = dark_lungs
    views = {key: geometry.view(mask) for key, mask in truth.items()}
    annotated = {s: {key: view[s].copy() for key, view in views.items()} for s in (5, 9, 12)}
    masks, stops = propagation.propagate(volume, geometry, annotated, NoEngine(), DarkInBox())
    for key in truth:
        assert np.array_equal(masks[key], truth[key]), key
    assert {stop.reason for stop in stops} == {"empty"}
    with pytest.raises(SettingError, match="outside the volume"):
        propagation.propagate(volume, geometry, {25: annotated[5]}, NoEngine(), DarkInBox())
    with pytest.raises(SettingError, match="No annotated slice"):
        empty = {key: np.zeros_like(mask) for key, mask in annotated[5].items()}
        propagation.propagate(volume, geometry, {5: empty}, NoEngine(), DarkInBox())


def test_with_patience_a_segment_lost_on_one_slice_carries_on_from_its_last_good_mask():
    truth = two_lungs()
    strict, _ = walk(truth, [10], Rules(patience=0), FailsOnFirstVisit(truth, 13, "left"))
    assert all("left" not in strict.masks[s] for s in range(13, 30))
    patient, _ = walk(truth, [10], Rules(patience=1), FailsOnFirstVisit(truth, 13, "left"))
    assert "left" not in patient.masks[13]  # the slice it missed stays empty
    for s in list(range(14, 25)):
        assert np.array_equal(patient.masks[s]["left"], truth[s]["left"]), s
    # It stops where the lung ends, at the first slice it missed there, after one more try.
    up = [stop for stop in patient.stops if stop.segment == "left" and stop.direction > 0]
    assert [(stop.slice, stop.reason) for stop in up] == [(25, "empty")]


@pytest.mark.parametrize("start_from", ["model", "drawn"])
def test_the_walk_starts_from_the_model_or_from_the_users_outline(dark_lungs, start_from):
    volume, geometry, truth = dark_lungs
    views = {key: geometry.view(mask) for key, mask in truth.items()}
    annotated = {9: {key: view[9].copy() for key, view in views.items()}}
    # The user's outline of the right lung is a square around it: the model's mask (dark
    # pixels in its box) is the disc, the outline itself is the square.
    square = box_of(annotated[9]["right"])
    annotated[9]["right"] = square.copy()
    rules = propagation.Rules(
        start_from=start_from, max_growth=0, min_overlap=0.0, max_intensity_shift=255.0
    )
    masks, _ = propagation.propagate(
        volume, geometry, annotated, NoEngine(), DarkInBox(), rules=rules
    )
    on_annotated = geometry.view(masks["right"])[9]
    expected = square if start_from == "drawn" else geometry.view(truth["right"])[9]
    assert np.array_equal(on_annotated, expected)
    assert np.array_equal(annotated[9]["right"], square)  # the input is untouched
    # Either way the walk reaches the rest of the lung from there.
    assert np.array_equal(geometry.view(masks["right"])[3:9], geometry.view(truth["right"])[3:9])


def test_an_unknown_start_is_refused():
    with pytest.raises(SettingError, match="start_from"):
        propagation.Rules(start_from="both")
