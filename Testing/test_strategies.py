"""Every named strategy on a real CT slice, and the crop and click helpers."""

from types import SimpleNamespace

import numpy as np
import pytest

from SAMZeroShotLib import imaging, mrml_io, strategies
from SAMZeroShotLib.prompts import Prompt, box_prompt

# Union Dice on CTChest4 slice 20 (3 mm pixels), measured: paper 0.215, box 0.778, crop 0.750,
# zoom 0.778 (the lungs are large: no zoom), refine 0.781, flip4 0.813, flip4-xray 0.813 (a CT:
# same as flip4), box+crop 0.779, flip4+crop 0.783, flip-v 0.786, adaptive 0.786 (both lungs
# doubted here: predicted IoU 0.848 and 0.884), and the boxes alone (prompt-only) 0.789. One
# coarse slice ranks the strategies differently from the dev sets (docs/accuracy.md); this
# checks that each one runs and finds the lungs.
MIN_DICE = {
    "paper": 0.15,
    "box": 0.7,
    "crop": 0.67,
    "zoom": 0.7,
    "refine": 0.7,
    "flip4": 0.73,
    "flip4-xray": 0.73,
    "box+crop": 0.7,
    "flip4+crop": 0.7,
    "flip-v": 0.73,
    "adaptive": 0.73,
    "prompt-only": 0.7,
}


@pytest.mark.parametrize("name", sorted(strategies.STRATEGIES))
def test_each_strategy_segments_both_lungs_of_a_real_slice(engine, chest, dice, name):
    voxels, geometry, masks = chest
    image = imaging.to_rgb8(geometry.view(voxels)[20], imaging.WINDOW_PRESETS["ct-lung"])
    slice_masks = {key: geometry.view(mask)[20].copy() for key, mask in masks.items()}
    predicted = strategies.STRATEGIES[name].segment(image, slice_masks, engine)
    assert set(predicted) == {"right", "left"}
    for key in predicted:
        assert predicted[key].shape == image.shape[:2] and predicted[key].any(), key
    union = predicted["right"] | predicted["left"]
    score = dice(union, slice_masks["right"] | slice_masks["left"])
    assert score > MIN_DICE[name], f"{name}: Dice {score:.3f}"


def test_the_xray_cut_off_applies_to_radiographs_only(
    engine, chest, ctchest, radiograph_from_ct, dice
):
    voxels, geometry, masks = chest
    image, labels, _ = radiograph_from_ct(
        voxels, masks["right"], masks["left"], mrml_io.ijk_to_ras(ctchest[1])
    )
    rgb = imaging.to_rgb8(image, imaging.WINDOW_PRESETS["xray"])
    lungs = {"right": labels == 1, "left": labels == 2}
    plain = strategies.STRATEGIES["flip4"].segment(rgb, lungs, engine, "xray")
    calibrated = strategies.STRATEGIES["flip4-xray"].segment(rgb, lungs, engine, "xray")
    as_ct = strategies.STRATEGIES["flip4-xray"].segment(rgb, lungs, engine, "ct")
    for key in lungs:
        assert np.array_equal(as_ct[key], plain[key])  # CT keeps SAM's own cut-off
        assert (calibrated[key] >= plain[key]).all() and calibrated[key].sum() > plain[key].sum()
        # Measured on this radiograph (right / left): Dice 0.836 / 0.776 plain, 0.915 / 0.841 with
        # the X-ray cut-off.
        assert dice(calibrated[key], lungs[key]) > dice(plain[key], lungs[key]) + 0.03


def test_prompt_only_fills_each_box_without_the_model():
    mask = np.zeros((20, 30), bool)
    mask[3:8, 4:6] = True
    mask[10, 20] = True  # one more pixel: the box spans rows 3-10, columns 4-20
    result = strategies.STRATEGIES["prompt-only"].segment(
        np.zeros((20, 30, 3), np.uint8), {"a": mask, "empty": np.zeros_like(mask)}, engine=None
    )
    expected = np.zeros_like(mask)
    expected[3:11, 4:21] = True
    assert np.array_equal(result["a"], expected) and not result["empty"].any()


def test_by_modality_hands_each_slice_to_its_modality_s_strategy():
    class Marks:
        def __init__(self, value):
            self.value = value

        def segment(self, image, masks, engine, modality):
            return {key: np.full(mask.shape, self.value) for key, mask in masks.items()}

    chooser = strategies.ByModality("both", ct=Marks(False), xray=Marks(True))
    masks = {"a": np.ones((2, 2), bool)}
    assert chooser.segment(None, masks, None, "xray")["a"].all()
    assert not chooser.segment(None, masks, None, "ct")["a"].any()


def test_an_ensemble_averages_logits_where_its_members_see(engine, chest):
    voxels, geometry, masks = chest
    image = imaging.to_rgb8(geometry.view(voxels)[20], imaging.WINDOW_PRESETS["ct-lung"])
    slice_masks = {key: geometry.view(mask)[20].copy() for key, mask in masks.items()}
    box, crop = strategies.STRATEGIES["box"], strategies.STRATEGIES["crop"]
    whole = box.region_logits(image, slice_masks, engine)
    cropped = crop.region_logits(image, slice_masks, engine)
    both = strategies.EnsembleStrategy("both", (box, crop)).segment(image, slice_masks, engine)
    for key in slice_masks:
        (row0, row1, col0, col1), crop_logits = cropped[key]
        mean = whole[key][1].copy()
        mean[row0:row1, col0:col1] = (mean[row0:row1, col0:col1] + crop_logits) / 2
        assert np.array_equal(both[key], mean > 0)


def test_auto_resolves_per_model_and_unknown_names_fail():
    assert strategies.resolve("auto", "litemedsam")[0] == strategies.AUTO["litemedsam"]
    # An engine's model names itself by its spec; a stand-in without one gets the default.
    engine = SimpleNamespace(model=SimpleNamespace(spec=SimpleNamespace(name="litemedsam")))
    assert strategies.model_name_of(engine) == "litemedsam"
    stand_in = SimpleNamespace(model=object())
    assert (
        strategies.resolve("auto", strategies.model_name_of(stand_in))[0] == strategies.DEFAULT_AUTO
    )
    with pytest.raises(ValueError, match="Unknown strategy 'magic'"):
        strategies.resolve("magic")


def test_crop_region_grows_the_box_and_keeps_tiny_structures_large_enough_inside_the_image():
    mask = np.zeros((100, 200), bool)
    mask[40:60, 50:150] = True  # 20 rows x 100 columns
    assert strategies.crop_region(mask, 0.1, 0) == (38, 62, 40, 160)
    tiny = np.zeros((100, 200), bool)
    tiny[10:12, 5:8] = True
    # 48 px centred on the 2 x 3 px box, then clipped where it would leave the image.
    assert strategies.crop_region(tiny, 0.1, 48) == (0, 35, 0, 31)
    tiny_inside = np.zeros((100, 200), bool)
    tiny_inside[50:52, 100:103] = True
    assert strategies.crop_region(tiny_inside, 0.1, 48) == (27, 75, 77, 126)


def test_correction_click_goes_deep_into_the_larger_error():
    target = np.zeros((30, 30), bool)
    target[5:25, 5:25] = True
    predicted = target.copy()
    predicted[5:25, 15:25] = False  # missed the right half (200 px)
    predicted[0:3, 0:3] = True  # a small spurious blob (9 px)
    row, col, label = strategies.correction_click(target, predicted, 4)
    assert label == 1 and 5 <= row < 25 and 17 <= col <= 22  # positive, deep inside the missed half
    assert strategies.correction_click(target, target, 4) is None


class CountingEngine:
    """The real engine, counting the slices it is asked to encode."""

    def __init__(self, engine):
        self.engine, self.encoded = engine, 0

    def encode(self, images):
        self.encoded += len(images)
        return self.engine.encode(images)

    def decode(self, *args, **kwargs):
        return self.engine.decode(*args, **kwargs)


def test_adaptive_spends_the_second_view_only_on_the_segments_the_decoder_doubts(engine, chest):
    voxels, geometry, masks = chest
    image = imaging.to_rgb8(geometry.view(voxels)[20], imaging.WINDOW_PRESETS["ct-lung"])
    slice_masks = {key: geometry.view(mask)[20].copy() for key, mask in masks.items()}
    box = strategies.STRATEGIES["box"].segment(image, slice_masks, engine)
    flip_v = strategies.STRATEGIES["flip-v"].segment(image, slice_masks, engine)
    [embedding] = engine.encode([image])
    scores = {
        key: prediction.score
        for key, prediction in zip(
            slice_masks,
            engine.decode(
                embedding,
                [Prompt(segments=(key,), box=box_prompt(m)) for key, m in slice_masks.items()],
            ),
            strict=True,
        )
    }
    low, high = sorted(scores.values())
    assert high - low > 0.01  # measured 0.848 and 0.884: one threshold between them
    for min_score, doubted, encodes in ((low - 0.01, set(), 1), ((low + high) / 2, None, 2)):
        counting = CountingEngine(engine)
        adaptive = strategies.AdaptiveStrategy("adaptive", min_score=min_score)
        result = adaptive.segment(image, slice_masks, counting)
        assert counting.encoded == encodes
        doubted = doubted if doubted is not None else {min(scores, key=scores.get)}
        assert set(adaptive.doubtful(scores)) == doubted
        for key in slice_masks:
            expected = flip_v[key] if key in doubted else box[key]
            assert np.array_equal(result[key], expected), key
    assert not np.array_equal(box[min(scores, key=scores.get)], flip_v[min(scores, key=scores.get)])


def test_adaptive_encodes_nothing_on_a_slice_without_prompts():
    counting = CountingEngine(engine=None)
    empty = {"a": np.zeros((8, 8), bool)}
    result = strategies.STRATEGIES["adaptive"].segment(
        np.zeros((8, 8, 3), np.uint8), empty, counting
    )
    assert counting.encoded == 0 and not result["a"].any()
