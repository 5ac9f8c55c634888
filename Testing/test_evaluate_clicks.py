"""``samzeroshot evaluate --clicks N``: simulated corrections measured in the results folder."""

import csv
import json

import pytest


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_with_clicks_writes_the_dice_curve(samzeroshot, cohort, tmp_path):
    images, labels = cohort
    out = tmp_path / "out"
    code, stdout, stderr = samzeroshot.evaluate(
        images, labels, out, "--strategy", "box", "--clicks", "2"
    )
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    curve = summary["dice_by_clicks"]
    assert len(curve) == 3
    assert curve[0] == pytest.approx(summary["mean_dice"])
    assert summary["settings"]["clicks"] == 2
    assert summary["settings"]["correction"] == "bounded"
    assert "mean Dice after 0, 1, ... clicks" in stdout
    slices = read_rows(out / "slices.csv")
    for row in slices:
        values = [float(v) for v in row["dice_by_clicks"].split(";")]
        assert len(values) == 3 and values[0] == pytest.approx(float(row["dice"]), abs=1e-6)
    cases = read_rows(out / "cases.csv")
    assert {row["case"] for row in cases} == {"ct", "xray"}
    for row in cases:
        values = [float(v) for v in row["dice_by_clicks"].split(";")]
        assert values[0] == pytest.approx(float(row["mean_dice"]), abs=1e-6)


def test_evaluate_without_clicks_keeps_its_tables_and_settings(samzeroshot, cohort, tmp_path):
    images, labels = cohort
    out = tmp_path / "out"
    code, _, stderr = samzeroshot.evaluate(images, labels, out, "--strategy", "prompt-only")
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "dice_by_clicks" not in summary and "clicks" not in summary["settings"]
    assert "dice_by_clicks" not in read_rows(out / "slices.csv")[0]


@pytest.mark.parametrize(
    "options, message",
    [
        (("--clicks", "-1"), "--clicks -1: give a whole number of clicks"),
        (("--clicks", "2", "--workers", "2"), "--clicks runs in this process"),
    ],
)
def test_bad_click_options_are_refused(samzeroshot, cohort, tmp_path, options, message):
    images, labels = cohort
    code, _, stderr = samzeroshot.evaluate(images, labels, tmp_path / "out", *options)
    assert code == 2 and message in stderr
