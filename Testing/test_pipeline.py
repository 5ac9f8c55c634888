"""The slice loop on real CT slices with the built-in model, and propagation from one slice."""

from dataclasses import replace

import numpy as np
import pytest

from SAMZeroShotLib import errors, metrics, pipeline
from SAMZeroShotLib.engine import EmbeddingCache


def test_only_slices_with_prompts_are_encoded_and_filled(engine, chest_volume, monkeypatch):
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [15, 20])
    before = engine.encoded_slices
    monkeypatch.setattr(
        engine, "cache", EmbeddingCache()
    )  # empty, and the shared one stays as it was
    events = []
    result = pipeline.segment_volume(
        volume,
        geometry,
        kept,
        engine,
        strategy="box",
        progress=lambda fraction, message: events.append(fraction),
    )
    assert engine.encoded_slices - before == 2
    assert [outcome.slice for outcome in result.slices] == [15, 20]
    for mask in result.masks.values():
        filled = np.flatnonzero(geometry.view(mask).any(axis=(1, 2)))
        assert set(filled) <= {15, 20}
        assert mask.shape == volume.voxels.shape
    assert events[0] == 0.0 and events[-1] == 1.0 and events == sorted(events)


def test_box_prompts_find_the_lungs_on_a_real_slice(engine, chest_volume):
    # Measured on this 3 mm, 128 x 128 slice: right 0.713, left 0.833 (the model misses the
    # anterior tip of the right lung that the coarse reference includes).
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [20])
    result = pipeline.segment_volume(volume, geometry, kept, engine, strategy="box")
    for key in ("right", "left"):
        predicted, reference = geometry.view(result.masks[key])[20], geometry.view(masks[key])[20]
        dice = metrics.overlap(predicted, reference)["dice"]
        assert dice > 0.65, f"{key} lung Dice {dice:.3f} on slice 20"


def test_paper_prompt_yields_one_mask_split_between_the_lungs(engine, chest_volume):
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [20])
    result = pipeline.segment_volume(volume, geometry, kept, engine, strategy="paper")
    right, left = geometry.view(result.masks["right"])[20], geometry.view(result.masks["left"])[20]
    assert not (right & left).any()
    assert (right | left).any()


def slice_threads():
    """Threads of the pipeline's slice workers still alive."""
    import threading

    return [
        thread for thread in threading.enumerate() if thread.name.startswith("samzeroshot-slice")
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_stops_before_the_next_slice_and_leaves_no_thread_behind(
    engine, chest_volume, monkeypatch, workers
):
    volume, geometry, masks = chest_volume
    monkeypatch.setattr(engine, "workers", workers)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(errors.Cancelled):
        pipeline.segment_volume(volume, geometry, masks, engine, strategy="box", cancel=cancel)
    assert len(calls) == 4
    assert not slice_threads()


def test_inputs_are_not_modified(engine, chest_volume):
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [20])
    copies = volume.voxels.copy(), {k: m.copy() for k, m in kept.items()}
    pipeline.segment_volume(volume, geometry, kept, engine, strategy="paper")
    np.testing.assert_array_equal(volume.voxels, copies[0])
    for key in kept:
        np.testing.assert_array_equal(kept[key], copies[1][key])


def test_the_modality_the_volume_records_decides_unless_set(engine, chest_volume):
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [20])

    def told(volume, modality="auto"):
        result = pipeline.segment_volume(
            volume, geometry, kept, engine, strategy="prompt-only", modality=modality
        )
        return result.modality

    assert told(volume) == "ct"  # 34 slices, nothing recorded
    assert told(replace(volume, modality="CR")) == "xray"  # as Slicer's DICOM loader records it
    assert told(replace(volume, modality="CR"), "ct") == "ct"


def test_bad_inputs_are_named(engine, chest_volume):
    volume, geometry, masks = chest_volume
    with pytest.raises(ValueError, match="No prompt segments"):
        pipeline.segment_volume(volume, geometry, {}, engine)
    with pytest.raises(ValueError, match="has shape"):
        pipeline.segment_volume(volume, geometry, {"a": np.zeros((2, 2, 2), bool)}, engine)
    with pytest.raises(ValueError, match="Unknown strategy"):
        pipeline.segment_volume(volume, geometry, masks, engine, strategy="magic")


def test_slices_segmented_side_by_side_match_one_at_a_time(engine, chest_volume, monkeypatch):
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [14, 17, 21])
    results = {}
    for workers in (1, 2):
        monkeypatch.setattr(engine, "workers", workers)
        monkeypatch.setattr(engine, "cache", EmbeddingCache())  # encode again, in the lanes
        events = []
        results[workers] = pipeline.segment_volume(
            volume,
            geometry,
            kept,
            engine,
            strategy="box",
            progress=lambda fraction, message, events=events: events.append(fraction),
        )
        assert [outcome.slice for outcome in results[workers].slices] == [14, 17, 21]
        assert events == sorted(events) and events[-1] == 1.0
    if engine.encoder.name != "torch":  # the lanes ran their own, smaller sessions
        assert max(1, engine.threads // 2) in engine.encoder.part._opened
    for key in masks:
        # Another thread count only reorders float sums: at most a boundary pixel may differ.
        dice = metrics.overlap(results[2].masks[key], results[1].masks[key])["dice"]
        assert dice > 0.999, f"{key}: Dice {dice:.5f} between one and two workers"


def test_an_error_on_one_slice_reaches_the_caller_when_slices_run_side_by_side(
    engine, chest_volume, monkeypatch
):
    volume, geometry, masks = chest_volume
    monkeypatch.setattr(engine, "workers", 2)

    class FailsOnSecondSlice:
        name = "fails"
        seen = []

        def segment(self, image, slice_masks, engine, modality="ct"):
            self.seen.append(1)
            if len(self.seen) == 2:
                raise RuntimeError("slice failed")
            return {key: np.zeros(image.shape[:2], bool) for key in slice_masks}

    with pytest.raises(RuntimeError, match="slice failed"):
        pipeline.segment_volume(volume, geometry, masks, engine, strategy=FailsOnSecondSlice())
    assert not slice_threads()


# Propagation from the largest lung slice (12) of CTChest4 with flip4 (test-time flips on CT),
# measured per slice with the rules chosen on the dev sets (propagation.CHOSEN_FROM_DATA): 0.718
# (slice 9), 0.803 (10), 0.798 (11), 0.920 (12), 0.951 (13) ... 0.927 (31), 0.494 (32); mean 0.726
# over the 28 slices with lung (the apex slices 6-8 and base slice 33 are missed); nothing outside
# the lung. With the rules before (0.70): 0.656 on slice 11, slice 32 missed.
MIN_PROPAGATED_MEAN_DICE = 0.62
MIN_PROPAGATED_SLICE_DICE = 0.55


def test_propagation_from_one_slice_carries_on_and_stops(
    default_whole_volume_run, engine, chest_volume, dice
):
    volume, geometry, masks = chest_volume
    [middle] = pipeline.annotated_slices(masks, geometry)
    kept = pipeline.keep_slices(masks, geometry, [middle])
    assert geometry.view(kept["right"] | kept["left"]).any(axis=(1, 2)).sum() == 1
    result = pipeline.segment_volume(
        volume, geometry, kept, engine, strategy="flip4", propagate=True
    )
    reference = geometry.view(masks["right"] | masks["left"])
    predicted = geometry.view(result.masks["right"] | result.masks["left"])
    with_lung = np.flatnonzero(reference.any(axis=(1, 2)))
    scores = {int(s): dice(predicted[s], reference[s]) for s in with_lung}
    assert np.mean(list(scores.values())) > MIN_PROPAGATED_MEAN_DICE
    # It walks both ways from the annotated slice, slice after slice, to near the apex and the base.
    assert all(scores[s] > MIN_PROPAGATED_SLICE_DICE for s in range(middle - 3, middle + 20)), (
        scores
    )
    # Where the lungs have ended, it has stopped: those slices stay empty.
    assert not predicted[: with_lung[0]].any() and not predicted[with_lung[-1] + 1 :].any()
