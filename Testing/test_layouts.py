"""The paper's data sets read as published (Montgomery County, COVID-19-CT-Seg).

The fixtures (in conftest.py, shared with test_reproduction.py) lay out small real images the way
each archive unpacks: radiographs made from slicerio's chest CT, and slices of that CT in
Hounsfield units and as exported grey levels, with their real lung masks written as each data
set stores them.
"""

import numpy as np
import pytest

from SAMZeroShotLib import imaging, layouts
from SAMZeroShotLib.cases import case_settings, read_case_labels
from SAMZeroShotLib.engines import EngineFactory
from SAMZeroShotLib.parameters import Parameters
from SAMZeroShotLib.volumes import read_volume

# The cases the montgomery_set and covid_set fixtures (conftest.py) lay out.
MONTGOMERY_CASES = ("MCUCXR_0001_0", "MCUCXR_0002_0")
CORONACASE, RADIOPAEDIA = "coronacases_001", "radiopaedia_4_85506_1"


# -- the layouts -----------------------------------------------------------------------------------
def test_montgomery_is_read_as_the_archive_unpacks(montgomery_set, chest_ct, radiograph_from_ct):
    cases, problems = layouts.find("montgomery", montgomery_set)
    assert [case.name for case in cases] == list(
        MONTGOMERY_CASES
    ) and problems == []  # Thumbs.db is no case
    case = cases[0]
    assert case.settings == {"window": "xray"} and len(case.masks) == 2
    shape = read_volume(case.image_path).voxels.shape
    labels = read_case_labels(case, shape)[0]
    voxels, matrix, (right, left) = chest_ct
    _, expected, _ = radiograph_from_ct(voxels, right, left, matrix)
    # 0/255 masks: the right lung is label 1, the left lung 2, as in the project's other data.
    np.testing.assert_array_equal(labels, expected.astype(np.int64))
    mirrored = read_case_labels(cases[1], shape)[0]
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
    volume = read_volume(by_name[CORONACASE].image_path)
    labels = read_case_labels(by_name[CORONACASE], volume.voxels.shape)
    np.testing.assert_array_equal(
        labels == 1, right[18:21]
    )  # the data set's 2 (right lung) is our 1
    np.testing.assert_array_equal(labels == 2, left[18:21])
    # HU volumes get the lung window, exported grey levels only the min-max stretch.
    assert by_name[CORONACASE].settings == {"window": "ct-lung"}
    assert by_name[RADIOPAEDIA].settings == {"window": "xray"}
    assert case_settings(by_name[RADIOPAEDIA], Parameters()) == {"window": "xray"}
    # A window the user chose applies to every case.
    assert case_settings(by_name[RADIOPAEDIA], Parameters(window="ct-lung")) == {
        "window": "ct-lung"
    }
    grey = read_volume(by_name[RADIOPAEDIA].image_path).voxels
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
    monkeypatch.setattr(EngineFactory, "get", lambda *a, **k: pytest.fail("the model was loaded"))
    options = [option.format(data=tmp_path) for option in options]
    code, stdout, stderr = samzeroshot("evaluate", *options, "--out", tmp_path / "out")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and message in stderr, stderr
