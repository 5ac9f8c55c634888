"""The paper's data sets read as published (Montgomery County, COVID-19-CT-Seg) and
`samzeroshot reproduce`.

The fixtures lay out small real images the way each archive unpacks: radiographs made from
slicerio's chest CT, and slices of that CT in Hounsfield units and as exported grey levels, with
their real lung masks written as each data set stores them.
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from SAMZeroShotLib import evaluation, imaging, layouts, mrml_io, segment_nodes
from SAMZeroShotLib.parameters import Parameters

MONTGOMERY_CASES = ("MCUCXR_0001_0", "MCUCXR_0002_0")
CORONACASE, RADIOPAEDIA = "coronacases_001", "radiopaedia_4_85506_1"


@pytest.fixture
def chest_ct(ctchest):
    """CTChest4's voxels (HU), IJK-to-RAS and lung masks ``(right, left)``."""
    scene, volume, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], volume)
    return mrml_io.volume_array(volume), mrml_io.ijk_to_ras(volume), tuple(masks.values())


def write_png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(array)), str(path))


@pytest.fixture
def montgomery_set(chest_ct, radiograph_from_ct, tmp_path):
    """The Montgomery County archive as it unpacks (``MontgomerySet/`` inside), two radiographs.

    The second is the first mirrored left-right. Masks are 0/255 PNGs, one folder per lung, and
    ``CXR_png`` holds a ``Thumbs.db`` as the published archive does.
    """
    voxels, matrix, (right, left) = chest_ct
    image, labels, _ = radiograph_from_ct(voxels, right, left, matrix)
    gray = (255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
    root = tmp_path / "NLM-MontgomeryCXRSet" / "MontgomerySet"
    for name, mirrored in zip(MONTGOMERY_CASES, (False, True), strict=True):
        view = (lambda a: a[:, ::-1]) if mirrored else (lambda a: a)
        write_png(view(gray), root / "CXR_png" / f"{name}.png")
        write_png(
            view((labels == 1).astype(np.uint8) * 255),
            root / "ManualMask" / "rightMask" / f"{name}.png",
        )
        write_png(
            view((labels == 2).astype(np.uint8) * 255),
            root / "ManualMask" / "leftMask" / f"{name}.png",
        )
    (root / "CXR_png" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    return tmp_path / "NLM-MontgomeryCXRSet"


@pytest.fixture
def covid_set(chest_ct, tmp_path):
    """COVID-19-CT-Seg laid out as on Zenodo: a CT in HU and one exported as grey levels, 3 slices
    each.

    Lung masks use the data set's numbering: 1 left lung, 2 right lung.
    """
    voxels, matrix, (right, left) = chest_ct
    root = tmp_path / "covid"
    volumes = {
        CORONACASE: (voxels[18:21].astype(np.int16), slice(18, 21)),
        # Radiopaedia's volumes are image exports: the lung window baked into 0-255 grey levels.
        RADIOPAEDIA: (
            np.clip((voxels[20:23] + 1400.0) / 1500.0 * 255, 0, 255).astype(np.uint8),
            slice(20, 23),
        ),
    }
    for name, (array, rows) in volumes.items():
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((3.0, 3.0, 10.0))
        mask = sitk.GetImageFromArray((left[rows] * 1 + right[rows] * 2).astype(np.uint8))
        mask.CopyInformation(image)
        for folder, item in ((layouts.COVID_IMAGES, image), (layouts.COVID_MASKS, mask)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(item, str(root / folder / f"{name}.nii.gz"))
    return root


# -- the layouts -----------------------------------------------------------------------------------
def test_montgomery_is_read_as_the_archive_unpacks(montgomery_set, chest_ct, radiograph_from_ct):
    cases, problems = layouts.find("montgomery", montgomery_set)
    assert [case.name for case in cases] == list(
        MONTGOMERY_CASES
    ) and problems == []  # Thumbs.db is no case
    case = cases[0]
    assert case.settings == {"window": "xray"} and len(case.masks) == 2
    image, _ = evaluation.read_image(case.image_path)
    labels = evaluation.read_case_labels(case, image.shape)[0]
    voxels, matrix, (right, left) = chest_ct
    _, expected, _ = radiograph_from_ct(voxels, right, left, matrix)
    # 0/255 masks: the right lung is label 1, the left lung 2, as in the project's other data.
    np.testing.assert_array_equal(labels, expected.astype(np.int64))
    mirrored = evaluation.read_case_labels(cases[1], image.shape)[0]
    np.testing.assert_array_equal(mirrored, expected[:, ::-1])


def test_a_montgomery_image_without_one_of_its_masks_is_a_problem_named_in_one_line(montgomery_set):
    (montgomery_set / "MontgomerySet" / "ManualMask" / "leftMask" / "MCUCXR_0002_0.png").unlink()
    cases, problems = layouts.find("montgomery", montgomery_set)
    assert [case.name for case in cases] == ["MCUCXR_0001_0"]
    assert len(problems) == 1 and str(problems[0]).endswith(
        "MCUCXR_0002_0.png: no left-lung mask ManualMask/leftMask/MCUCXR_0002_0.png"
    )


def test_covid19_ct_seg_swaps_its_lung_labels_and_windows_each_source_as_the_paper(
    covid_set, chest_ct
):
    cases, problems = layouts.find("covid19-ct-seg", covid_set)
    assert [case.name for case in cases] == [CORONACASE, RADIOPAEDIA] and problems == []
    by_name = {case.name: case for case in cases}
    voxels, _, (right, left) = chest_ct
    volume, _ = evaluation.read_image(by_name[CORONACASE].image_path)
    labels = evaluation.read_case_labels(by_name[CORONACASE], volume.shape)
    np.testing.assert_array_equal(
        labels == 1, right[18:21]
    )  # the data set's 2 (right lung) is our 1
    np.testing.assert_array_equal(labels == 2, left[18:21])
    # HU volumes get the lung window, exported grey levels only the min-max stretch.
    assert by_name[CORONACASE].settings == {"window": "ct-lung"}
    assert by_name[RADIOPAEDIA].settings == {"window": "xray"}
    assert evaluation.case_settings(by_name[RADIOPAEDIA], Parameters()) == {"window": "xray"}
    # A window the user chose applies to every case.
    assert evaluation.case_settings(by_name[RADIOPAEDIA], Parameters(window="ct-lung")) == {
        "window": "ct-lung"
    }
    grey, _ = evaluation.read_image(by_name[RADIOPAEDIA].image_path)
    assert imaging.resolve_window("xray", grey).level is None and grey.max() <= 255


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--layout", "montgomery"],
            "--layout montgomery reads the data set's folder as published: give --data DIR",
        ),
        (["--layout", "kaggle", "--data", "."], "Unknown layout 'kaggle'"),
        (
            ["--layout", "covid19-ct-seg", "--data", "{data}"],
            "not the COVID-19-CT-Seg set: no COVID-19-CT-Seg_20cases",
        ),
        ([], "give --images and --masks"),
    ],
)
def test_layout_options_are_checked_in_one_line_before_the_model(
    samzeroshot, capsys, tmp_path, monkeypatch, options, message
):
    monkeypatch.setattr(
        segment_nodes, "get_engine", lambda *a, **k: pytest.fail("the model was loaded")
    )
    options = [option.format(data=tmp_path) for option in options]
    code, stdout, stderr = samzeroshot("evaluate", *options, "--out", tmp_path / "out")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and message in stderr, stderr


# -- reproduce -------------------------------------------------------------------------------------
def test_reproduce_writes_the_papers_table_beside_ours(
    samzeroshot, capsys, montgomery_set, covid_set, tmp_path
):
    out = tmp_path / "reproduction"
    code, stdout, stderr = samzeroshot(
        "reproduce", "--montgomery", montgomery_set, "--covid-ct", covid_set, "--out", out
    )
    assert code == 0, stderr
    assert "the paper's prompt (strategy paper) with model litemedsam" in stderr
    summaries = {
        name: json.loads((out / name / "summary.json").read_text())
        for name in ("montgomery", "covid19-ct-seg")
    }
    assert (
        summaries["montgomery"]["n_cases"] == 2 and summaries["montgomery"]["n_scored_slices"] == 2
    )
    assert (
        summaries["covid19-ct-seg"]["n_cases"] == 2
        and summaries["covid19-ct-seg"]["n_scored_slices"] == 6
    )
    assert all(s["strategy"] == "paper" and s["complete"] for s in summaries.values())
    assert summaries["covid19-ct-seg"]["case_settings"] == {
        CORONACASE: {"window": "ct-lung"},
        RADIOPAEDIA: {"window": "xray"},
    }

    table = json.loads((out / "table.json").read_text())
    rows = {row["data_set"]: row for row in table["rows"]}
    assert rows["covid19-ct-seg"]["paper"] == {
        "dice": 94.95,
        "jaccard": 91.45,
        "n_cases": 20,
        "n_scored_slices": 2973,
        "model": "SAM ViT-L",
        "strategy": "paper",
    }
    assert (
        rows["montgomery"]["paper"]["dice"] == 93.19
        and rows["montgomery"]["paper"]["jaccard"] == 87.45
    )
    assert rows["montgomery"]["paper"]["n_cases"] == 138
    for name, summary in summaries.items():
        ours = rows[name]["ours"]
        assert (
            ours["model"] == "litemedsam" and ours["strategy"] == "paper" and ours["n_cases"] == 2
        )
        assert ours["dice"] == round(100 * summary["mean_dice"], 2)
        assert ours["jaccard"] == round(100 * summary["mean_jaccard"], 2)
    markdown = (out / "table.md").read_text()
    for text in (
        "94.95",
        "91.45",
        "2973",
        "93.19",
        "87.45",
        "138 images",
        "SAM ViT-L",
        "litemedsam",
        "oracle prompts",
        f"{rows['montgomery']['ours']['dice']:.2f}",
    ):
        assert text in markdown, text
    assert markdown in stdout
