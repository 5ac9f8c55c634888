"""The accuracy guard: a reduced-precision runtime is kept only if it segments like float32."""

import torch

from SAMZeroShotLib import accuracy_guard, runtimes


class FakeBf16EncoderThatDamagesMasks:
    """A fake, named as such: a reduced-precision encoder that is broken, which no real runtime
    gives on purpose. It adds seeded noise of 60 % of the embedding's spread to the real
    encoder's output."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.name = encoder.name

    def __call__(self, batch):
        features = self.encoder(batch)
        noise = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
        return features + 0.6 * features.std() * noise


def test_the_accuracy_guard_rejects_a_fake_bf16_path_that_damages_masks_and_accepts_an_exact_one(
    engine, litemedsam
):
    reference = engine.runtime
    damaged = runtimes.Runtime(
        FakeBf16EncoderThatDamagesMasks(reference.encoder), reference.decoder, "bf16"
    )
    verdict = accuracy_guard.check(litemedsam, reference, damaged, slices=3)
    assert not verdict.passed
    assert verdict.min_twin_dice < accuracy_guard.MIN_TWIN_DICE, verdict
    exact = accuracy_guard.check(litemedsam, reference, reference, slices=3)
    assert exact.passed and exact.min_twin_dice == 1.0 and exact.masks == 6
    assert (
        exact.mean_dice_reference > 0.5
    )  # measured 0.567 over these 3 slices, both lungs (a coarse 128 x 128 CT)


def test_the_shipped_test_data_has_both_lungs():
    voxels, ijk_to_ras, lungs = accuracy_guard.shipped_lungs()
    assert voxels.shape == (34, 128, 128)
    assert all(mask.shape == voxels.shape and mask.sum() > 1000 for mask in lungs.values())
    assert not (lungs["right lung"] & lungs["left lung"]).any()
