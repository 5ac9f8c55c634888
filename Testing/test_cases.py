"""A cohort's cases read from files: the volume, its reference segments and the ignore label."""

import numpy as np
import pytest
import SimpleITK as sitk

from SAMZeroShotLib import cases
from SAMZeroShotLib.errors import CaseError


def paired(images, masks, name, image_ext, mask_ext):
    return cases.Case(
        name, images / f"{name}{image_ext}", (cases.MaskFile(masks / f"{name}{mask_ext}"),)
    )


def test_a_case_is_its_volume_its_segments_and_its_ignore_band(cohort, digests):
    images, masks = cohort
    before = digests(images, masks)
    volume, geometry, notes, reference, ignore = cases.read_case(
        paired(images, masks, "xray", ".png", ".png")
    )
    assert volume.voxels.shape[0] == 1 and geometry.axis == 0 and notes == []
    assert sorted(reference) == [1, 2] and not (reference[1] & reference[2]).any()
    assert ignore[..., :4].all() and not ignore[..., 4:].any()  # the band along the border
    ct, geometry, _, reference, ignore = cases.read_case(
        paired(images, masks, "ct", ".nrrd", ".nii.gz")
    )
    assert ct.voxels.shape == (3, 128, 128) and ct.name == "ct" and not ignore.any()
    assert all(mask.shape == ct.voxels.shape and mask.any() for mask in reference.values())
    assert digests(images, masks) == before


def test_a_mask_of_another_size_is_one_line_naming_it(cohort, tmp_path):
    images, masks = cohort
    small = tmp_path / "small.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 4), np.uint8)), str(small))
    case = cases.Case("xray", images / "xray.png", (cases.MaskFile(small),))
    with pytest.raises(CaseError, match=r"small.png: mask size 4 x 5 differs from its image's"):
        cases.check_case(case)
    good, problems = cases.prepare(
        ([case, paired(images, masks, "ct", ".nrrd", ".nii.gz")], []), images, keep_going=True
    )
    assert [c.name for c in good] == ["ct"] and len(problems) == 1
