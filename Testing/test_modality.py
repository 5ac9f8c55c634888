"""CT or radiograph: the DICOM Modality first, then the number of slices, then the image content.

Real images only: CTChest4 slices (HU, and saved as 8-bit PNG), a radiograph made from that CT
(saved as 16-bit PNG), pydicom's CT_small.dcm (a CT slice cropped so that the body fills the
frame: only its Modality tag makes it a CT) and pydicom-data's RG1_UNCI.dcm (a real CR chest
radiograph, MONOCHROME1).
"""

import json
from dataclasses import replace

import builders
import numpy as np
import pytest
import SimpleITK as sitk

from SAMZeroShotLib import cli, imaging, modality, mrml_io, segment_nodes
from SAMZeroShotLib.volumes import Volume, read_volume


def dicom_file(name):
    from pydicom.data import get_testdata_file

    return get_testdata_file(name)


def decide(setting: str, volume: Volume):
    """:func:`modality.decide` with the volume's default slice geometry."""
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape)
    return modality.decide(setting, volume, geometry)


@pytest.fixture
def ct_png(chest, tmp_path):
    """A CTChest4 slice as an 8-bit PNG exported with the lung window, and its lung labels."""
    voxels, geometry, masks = chest
    gray = imaging.to_rgb8(geometry.view(voxels)[20], imaging.WINDOW_PRESETS["ct-lung"])[..., 0]
    labels = (geometry.view(masks["right"])[20] * 1 + geometry.view(masks["left"])[20] * 2).astype(
        np.uint8
    )
    path = tmp_path / "ct8.png"
    sitk.WriteImage(sitk.GetImageFromArray(gray), str(path))
    return path, labels


@pytest.fixture
def xray_png(chest, ctchest, tmp_path, radiograph_from_ct):
    """A radiograph of CTChest4 as a 16-bit PNG, and its lung labels."""
    voxels, _, masks = chest
    image, labels, _ = radiograph_from_ct(
        voxels, masks["right"], masks["left"], mrml_io.ijk_to_ras(ctchest[1])
    )
    path = tmp_path / "xray16.png"
    sitk.WriteImage(
        sitk.GetImageFromArray((image / image.max() * 60000).astype(np.uint16)), str(path)
    )
    return path, labels


def test_an_8_bit_ct_slice_is_a_ct_and_keeps_its_grey_levels(ct_png):
    image = read_volume(ct_png[0])
    assert image.voxels.max() <= 255 and image.voxels.min() >= 0  # the range would say radiograph
    assert decide("auto", image) == ("ct", "a body outline surrounded by air")
    assert imaging.resolve_window("auto", image.voxels).name == "min-max"


def test_a_16_bit_radiograph_is_a_radiograph(xray_png):
    image = read_volume(xray_png[0])
    assert image.voxels.max() > 255
    assert decide("auto", image) == ("xray", "the image fills its frame")


def test_a_ct_volume_is_a_ct_by_its_slices(chest):
    voxels, geometry, _ = chest
    assert modality.decide("auto", Volume(voxels, np.eye(4)), geometry) == (
        "ct",
        "a volume of 34 slices",
    )
    # Every slice of it also looks like a cross-section (body surrounded by air).
    assert all(modality.looks_like_axial_slice(plane) for plane in geometry.view(voxels)[::5])


@pytest.mark.parametrize(
    "name, tag, want", [("CT_small.dcm", "CT", "ct"), ("RG1_UNCI.dcm", "CR", "xray")]
)
def test_dicom_files_are_taken_at_their_word(name, tag, want):
    image = read_volume(dicom_file(name))
    assert image.modality == tag
    assert decide("auto", image) == (want, f"DICOM Modality {tag}")


def test_content_alone_on_the_dicom_images():
    # The real radiograph (inverted from MONOCHROME1) fills its frame ...
    radiograph = read_volume(dicom_file("RG1_UNCI.dcm"))
    assert not modality.looks_like_axial_slice(radiograph.voxels[0])
    # ... and so does CT_small, a CT slice cropped inside the body: only its tag tells.
    ct_small = read_volume(dicom_file("CT_small.dcm"))
    assert not modality.looks_like_axial_slice(ct_small.voxels[0])
    assert decide("auto", replace(ct_small, modality=None))[0] == "xray"


def test_the_user_overrides_and_unknown_names_fail(ct_png):
    image = read_volume(ct_png[0])
    assert decide("xray", replace(image, modality="CT")) == ("xray", "set by the user")
    # A tag that says neither: the content decides.
    assert decide("auto", replace(image, modality="MR"))[0] == "ct"
    with pytest.raises(ValueError, match="Unknown modality 'mri'"):
        decide("mri", image)


def test_a_blank_image_is_not_a_body_in_air():
    assert not modality.looks_like_axial_slice(np.zeros((64, 64)))


def test_evaluate_records_the_modality_and_honours_the_option(
    samzeroshot, capsys, ct_png, xray_png, tmp_path
):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for path, labels in (ct_png, xray_png):
        path.rename(images / path.name)
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(masks / path.name))
    out = tmp_path / "out"
    code, _, stderr = samzeroshot.evaluate(images, masks, out, "--strategy", "prompt-only")
    assert code == 0, stderr
    with open(out / "cases.csv") as handle:
        import csv

        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert (rows["ct8"]["modality"], rows["xray16"]["modality"]) == ("ct", "xray")
    # Another modality is another setting: the folder's earlier results are replaced, not mixed in.
    code, _, stderr = samzeroshot.evaluate(
        images, masks, out, "--strategy", "prompt-only", "--modality", "xray", "--overwrite"
    )
    assert code == 0, stderr
    with open(out / "cases.csv") as handle:
        assert {row["modality"] for row in csv.DictReader(handle)} == {"xray"}
    assert json.loads((out / "summary.json").read_text())["modality"] == "xray"
    code, _, stderr = samzeroshot.evaluate(images, masks, out, "--modality", "mri")
    assert (
        code == 2 and "Unknown modality 'mri'" in stderr and len(stderr.strip().splitlines()) == 1
    )


def test_both_commands_offer_the_option():
    parser = cli.build_parser()
    for command in ("segment", "evaluate"):
        subparser = parser._subparsers._group_actions[0].choices[command]
        assert "--modality" in subparser.format_help()


def test_process_reads_the_modality_slicer_recorded_and_the_setting_wins(ctchest, engines):
    scene, volume, segmentation, ids = ctchest
    ids = [ids["right lung"], ids["left lung"]]
    settings = segment_nodes.Parameters(strategy="prompt-only")
    _, table = segment_nodes.process(
        volume, segmentation, ids, parameters=settings, engines=engines
    )
    assert table.GetAttribute("SAMZeroShot.Modality") == "ct"  # 34 slices
    # As Slicer's DICOM loader records it on the volume's subject hierarchy item.
    builders.record_modality(volume, "CR")
    assert mrml_io.declared_modality(volume) == "CR"
    _, table = segment_nodes.process(
        volume, segmentation, ids, parameters=settings, engines=engines
    )
    assert table.GetAttribute("SAMZeroShot.Modality") == "xray"
    settings.modality = "ct"
    _, table = segment_nodes.process(
        volume, segmentation, ids, parameters=settings, engines=engines
    )
    assert table.GetAttribute("SAMZeroShot.Modality") == "ct"
