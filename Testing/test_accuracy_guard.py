"""The accuracy guard: a reduced-precision runtime is kept only if it is as accurate as float32
against the reference segments (agreement with float32 is reported, not judged)."""

import numpy as np
import torch

from SAMZeroShotLib import accuracy_guard, runtimes


def disk(centre_x: int, radius: int = 20, size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size // 2) ** 2 + (xx - centre_x) ** 2 <= radius**2


def test_a_candidate_that_moves_masks_without_losing_accuracy_is_kept():
    # The twin lies 3 pixels left of the truth, the candidate 3 pixels right: both are equally
    # far from the truth, so the candidate loses nothing although it agrees poorly with the twin.
    truths = [disk(48)] * 4
    verdict = accuracy_guard.judge(truths, [disk(45)] * 4, [disk(51)] * 4)
    assert verdict.passed, verdict
    assert verdict.mean_dice_candidate == verdict.mean_dice_reference
    assert verdict.min_twin_dice < 0.9  # the old twin-agreement rule would have rejected it


def test_a_candidate_that_loses_mean_dice_against_the_reference_is_rejected():
    truths = [disk(48, radius=40)] * 10
    # One pixel of radius less everywhere: every mask loses about 0.025, the mean as much.
    verdict = accuracy_guard.judge(truths, truths, [disk(48, radius=39)] * 10)
    assert not verdict.passed
    assert verdict.mean_dice_reference - verdict.mean_dice_candidate > (
        accuracy_guard.MAX_MEAN_DICE_DROP
    )
    assert verdict.worst_mask_drop <= accuracy_guard.MAX_MASK_DICE_DROP


def test_a_candidate_that_ruins_one_mask_of_many_is_rejected_though_the_mean_holds():
    truths = [disk(48)] * 200
    candidate = [disk(48)] * 199 + [disk(48, radius=16)]
    verdict = accuracy_guard.judge(truths, truths, candidate)
    assert verdict.mean_dice_reference - verdict.mean_dice_candidate <= (
        accuracy_guard.MAX_MEAN_DICE_DROP
    )
    assert verdict.worst_mask_drop > accuracy_guard.MAX_MASK_DICE_DROP
    assert not verdict.passed


def test_a_candidate_better_than_float32_is_kept():
    truths = [disk(48)] * 3
    verdict = accuracy_guard.judge(truths, [disk(50)] * 3, truths)
    assert verdict.passed and verdict.worst_mask_drop == 0.0


class FakeReducedPrecisionEncoderThatDamagesMasks:
    """A fake, named as such: a reduced-precision encoder that is broken, which no real runtime
    gives on purpose. It adds seeded noise of 60 % of the embedding's spread to the real
    encoder's output."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.name = encoder.name

    def __call__(self, batch, threads=None):
        features = self.encoder(batch, threads=threads)
        noise = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
        return features + 0.6 * features.std() * noise


def test_the_guard_on_the_shipped_ct_rejects_a_damaging_runtime_and_keeps_an_exact_one(
    engine, litemedsam
):
    reference = engine.runtime
    damaged = runtimes.Runtime(
        FakeReducedPrecisionEncoderThatDamagesMasks(reference.encoder), reference.decoder, "bf16"
    )
    verdict = accuracy_guard.check(litemedsam, reference, damaged, slices=3)
    assert not verdict.passed
    assert verdict.mean_dice_candidate < verdict.mean_dice_reference, verdict
    exact = accuracy_guard.check(litemedsam, reference, reference, slices=3)
    assert exact.passed and exact.min_twin_dice == 1.0 and exact.masks == 6
    assert exact.worst_mask_drop == 0.0
    # measured 0.567 over these 3 slices, both lungs (a coarse 128 x 128 CT)
    assert exact.mean_dice_reference > 0.5


def test_the_guard_uses_every_shipped_slice_with_both_lungs_by_default():
    _, lungs = accuracy_guard.shipped_lungs()
    both = (lungs["right lung"].any(axis=(1, 2)) & lungs["left lung"].any(axis=(1, 2))).sum()
    assert both >= 20  # enough masks for a stable verdict (54 masks measured)


def test_the_shipped_test_data_has_both_lungs():
    volume, lungs = accuracy_guard.shipped_lungs()
    assert volume.voxels.shape == (34, 128, 128)
    assert all(mask.shape == volume.voxels.shape and mask.sum() > 1000 for mask in lungs.values())
    assert not (lungs["right lung"] & lungs["left lung"]).any()


def test_the_guard_handed_to_the_runtime_layer_names_its_rule_and_reads_its_verdicts_back():
    verdict = accuracy_guard.judge([disk(48)] * 2, [disk(48)] * 2, [disk(50)] * 2)
    assert accuracy_guard.GUARD.rule == accuracy_guard.RULE
    assert accuracy_guard.GUARD.verdict(verdict.as_dict()) == verdict
