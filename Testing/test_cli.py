"""The console script: `samzeroshot segment` and `samzeroshot evaluate` on real data."""

import csv
import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk


def test_segment_writes_a_segmentation_slicerio_reads_and_a_metrics_table(
    samzeroshot, default_whole_volume_run, capsys, slicerio_data, tmp_path
):
    import slicerio

    out, metrics = tmp_path / "o.seg.nrrd", tmp_path / "o.tsv"
    volume, prompts = slicerio_data / "CTChest4.nrrd", slicerio_data / "Segmentation.seg.nrrd"
    code, stdout, stderr = samzeroshot.segment(
        volume, prompts, out, "--segments", "right lung,left lung", "--metrics", metrics
    )
    assert code == 0, stderr
    segmentation = slicerio.read_segmentation(str(out))
    assert sorted(s["name"] for s in segmentation["segments"]) == ["left lung", "right lung"]
    with open(metrics) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {"dice", "jaccard"} <= set(rows[0])
    volume_rows = {r["segment"]: float(r["dice"]) for r in rows if r["scope"] == "volume"}
    assert (
        volume_rows["right lung"] > 0.78 and volume_rows["left lung"] > 0.80
    )  # measured 0.810 / 0.839
    assert "Mean Dice" in stdout
    # Not a terminal: one line per slice, with the rate and the time left.
    assert re.search(r"^slice 1/\d+; [\d.]+ slices/s, about [\w ]+ left$", stderr, re.M), stderr


def test_segment_takes_the_modality_the_file_records(
    samzeroshot, capsys, slicerio_data, tmp_path, digests
):
    # CTChest4 with a header that records a radiograph: the file's word decides, as a DICOM
    # Modality does, and nothing is written into the scene to carry it there.
    image = sitk.ReadImage(str(slicerio_data / "CTChest4.nrrd"))
    image.SetMetaData("modality", "CR")
    volume = tmp_path / "recorded.nrrd"
    sitk.WriteImage(image, str(volume))
    before = digests(volume)
    out = tmp_path / "o.seg.nrrd"
    prompts = slicerio_data / "Segmentation.seg.nrrd"
    code, _, stderr = samzeroshot.segment(volume, prompts, out, "--strategy", "prompt-only")
    assert code == 0, stderr
    assert (
        "recorded: (128, 128, 34) voxels" in stderr and "a radiograph (DICOM Modality CR)" in stderr
    )
    code, _, stderr = samzeroshot.segment(
        volume, prompts, out, "--strategy", "prompt-only", "--modality", "ct"
    )
    assert code == 0 and "a CT (set by the user)" in stderr, stderr
    assert digests(volume) == before


def test_evaluate_writes_slices_cases_and_summary(samzeroshot, capsys, cohort, tmp_path):
    images, labels = cohort
    out = tmp_path / "out"
    code, stdout, stderr = samzeroshot.evaluate(images, labels, out, "--strategy", "box")
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2 and summary["n_scored_slices"] == 4
    assert (
        summary["model"] == "litemedsam" and summary["strategy"] == "box" and summary["seconds"] > 0
    )
    # Measured on these four slices: mean Dice 0.786, mean Jaccard 0.649.
    assert 0.7 < summary["mean_dice"] <= 1 and 0.5 < summary["mean_jaccard"] <= summary["mean_dice"]
    with open(out / "slices.csv") as handle:
        slices = list(csv.DictReader(handle))
    assert [(r["case"], r["slice"]) for r in slices] == [
        ("ct", "0"),
        ("ct", "1"),
        ("ct", "2"),
        ("xray", "0"),
    ]
    assert np.mean([float(r["dice"]) for r in slices]) == pytest.approx(
        summary["mean_dice"], abs=1e-5
    )
    with open(out / "cases.csv") as handle:
        assert [r["case"] for r in csv.DictReader(handle)] == ["ct", "xray"]
    # The prompt boxes alone, scored on the same slices at no model cost; the prompt-only strategy
    # itself gives the same number through the whole pipeline.
    assert 0.5 < summary["prompt_only_dice"] < 1
    assert np.mean([float(r["prompt_only_dice"]) for r in slices]) == pytest.approx(
        summary["prompt_only_dice"], abs=1e-5
    )
    code, _, stderr = samzeroshot.evaluate(
        images, labels, tmp_path / "boxes", "--strategy", "prompt-only"
    )
    assert code == 0, stderr
    boxes = json.loads((tmp_path / "boxes" / "summary.json").read_text())
    assert boxes["mean_dice"] == pytest.approx(summary["prompt_only_dice"], abs=1e-9)
    assert boxes["prompt_only_dice"] == pytest.approx(summary["prompt_only_dice"], abs=1e-9)


def test_evaluate_on_a_folder_another_run_writes_exits_2_in_one_line(
    samzeroshot, capsys, cohort, tmp_path, monkeypatch
):
    from SAMZeroShotLib import files
    from SAMZeroShotLib.engines import EngineFactory

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the folder is in use")

    monkeypatch.setattr(EngineFactory, "get", refuse)
    images, labels = cohort
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": other.pid, "host": socket.gethostname(), "started": "now", "token": "t"}
        (out / files.LOCK_FILE).write_text(json.dumps(lock))
        code, stdout, stderr = samzeroshot.evaluate(images, labels, out, "--strategy", "box")
    finally:
        other.kill()
        other.wait()
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert (
        lines[0].startswith("samzeroshot evaluate: error: ") and f"process {other.pid}" in lines[0]
    )
    assert f"delete {out / files.LOCK_FILE}" in lines[0]
    assert [p.name for p in out.iterdir()] == [files.LOCK_FILE]  # nothing else was written


def break_cohort(images, labels, how):
    if how == "missing mask":
        (labels / "ct.nii.gz").unlink()
        return "ct.nrrd: no mask with the same name"
    if how == "size mismatch":
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 5), np.uint8)), str(labels / "xray.png"))
        return "xray.png: mask size 5 x 5 differs from its image's 128 x 111"
    if how == "no labels":
        sitk.WriteImage(
            sitk.GetImageFromArray(np.zeros((111, 128), np.uint8)), str(labels / "xray.png")
        )
        return "xray.png: no labels"
    if how == "unreadable":
        (images / "xray.png").write_bytes(b"not an image")
        return "xray.png: not a readable image"


@pytest.mark.parametrize("how", ["missing mask", "size mismatch", "no labels", "unreadable"])
def test_evaluate_bad_input_stops_unless_keep_going(samzeroshot, capsys, cohort, tmp_path, how):
    images, labels = cohort
    message = break_cohort(images, labels, how)
    out = tmp_path / "out"
    code, stdout, stderr = samzeroshot.evaluate(images, labels, out)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], stderr
    assert not (out / "summary.json").exists()
    code, stdout, stderr = samzeroshot.evaluate(images, labels, out, "--keep-going")
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 1 and len(summary["skipped"]) == 1


@pytest.mark.parametrize(
    "option, message",
    [
        (["--model", "sam_vit_x"], "Unknown model"),
        (["--strategy", "magic"], "Unknown strategy"),
        (["--images", "nowhere"], "nowhere: folder not found"),
    ],
)
def test_evaluate_unknown_options_exit_2(samzeroshot, capsys, cohort, tmp_path, option, message):
    images, labels = cohort
    arguments = {"--images": images, "--masks": labels, "--out": tmp_path / "out"}
    arguments.update(dict(zip(option[::2], option[1::2], strict=True)))
    code, stdout, stderr = samzeroshot(
        "evaluate", *[item for pair in arguments.items() for item in pair]
    )
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_an_internal_error_keeps_its_traceback_and_says_what_to_report(
    samzeroshot, capsys, slicerio_data, tmp_path, monkeypatch
):
    from SAMZeroShotLib import __version__
    from SAMZeroShotLib.engines import EngineFactory

    def broken(*args, **kwargs):
        raise RuntimeError("a fault of ours")

    monkeypatch.setattr(EngineFactory, "get", broken)
    volume, prompts = slicerio_data / "CTChest4.nrrd", slicerio_data / "Segmentation.seg.nrrd"
    code, stdout, stderr = samzeroshot.segment(
        volume, prompts, tmp_path / "o.seg.nrrd", "--segments", "right lung"
    )
    lines = stderr.strip().splitlines()
    assert code == 1 and "Traceback" in stderr and "RuntimeError: a fault of ours" in stderr
    assert "internal error: please report it" in lines[-1] and __version__ in lines[-1]
    assert not (tmp_path / "o.seg.nrrd").exists()


def test_evaluate_propagates_from_k_slices_and_says_where_each_walk_stopped(
    samzeroshot, capsys, cohort, tmp_path
):
    # The 3-slice CT from 2 annotated slices: slices 0 and 2 keep the reference, slice 1 is
    # reached from both sides. The prompt boxes alone (no model) make the walks' masks.
    images, labels = cohort
    out = tmp_path / "out"
    code, _, stderr = samzeroshot.evaluate(
        images, labels, out, "--strategy", "prompt-only", "--propagate-from", "2"
    )
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["propagate_from"] == "2"
    with open(out / "cases.csv") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["ct"]["n_segmented_slices"] in ("2", "3")
    stops = rows["ct"]["propagation_stops"]
    assert summary["propagation_stops"] == ({"ct": stops} if stops else {})
    for stop in filter(None, stops.split("; ")):
        assert stop.startswith("label ") and " stopped at 1 (" in stop, stops
    assert rows["xray"]["propagation_stops"] == ""  # one slice: nothing to walk


@pytest.mark.parametrize("value", ["0", "top", "-1"])
def test_evaluate_propagate_from_takes_middle_or_a_number(
    samzeroshot, capsys, cohort, tmp_path, value
):
    images, labels = cohort
    with pytest.raises(SystemExit) as stopped:
        samzeroshot.evaluate(images, labels, tmp_path / "x", f"--propagate-from={value}")
    assert stopped.value.code == 2
    assert "give middle or a number of annotated slices" in capsys.readouterr().err
