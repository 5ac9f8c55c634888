"""Fault injection: typing slips, damaged files, a killed or interrupted run and a full disk.

Every test that hands files to the command line hashes them before and after: an input must never
change, whatever goes wrong. Refusals must come before any model work (the model loader is
replaced by one that fails the test) and be one line with exit code 2.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import builders
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import torch

from SAMZeroShotLib import headless, mrml_io
from SAMZeroShotLib.engines import EngineFactory
from SAMZeroShotLib.errors import OutputError
from SAMZeroShotLib.results import CaseResult, ResultsFolder

LIBRARY = Path(__file__).resolve().parents[1] / "SAMZeroShot"
BOX = ("--strategy", "box")  # one call per lung: the cheapest strategy, same files and code paths


# -- running and reading ------------------------------------------------------------------
def the_error(stderr: str) -> str:
    """The one error line: there is exactly one, it is the last, and no traceback came before it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def run_evaluate_process(images, masks, out, *options, stop=None):
    """``samzeroshot evaluate`` as its own process; ``stop(process, line)`` sees each stderr line.

    Returns ``(exit code, stderr lines)``.
    """
    env = dict(os.environ, PYTHONPATH=str(LIBRARY), PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "SAMZeroShotLib.cli",
        "evaluate",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--out",
        str(out),
        *BOX,
        *options,
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(
        540, process.kill
    )  # a hang fails the test instead of blocking the suite
    watchdog.start()
    lines = []
    try:
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if stop is not None:
                stop(process, line)
        return process.wait(), lines
    finally:
        watchdog.cancel()
        process.kill()


def computed_cases(lines):
    """Names of the cases a run segmented, from its ``case k/N name: ...`` log lines."""
    return [line.split()[2].rstrip(":") for line in lines if line.startswith("case ")]


def when_first_case_done(send):
    def stop(process, line):
        if line.startswith("case 1/"):
            process.send_signal(send)

    return stop


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if anything asks for the model: refusals come before any model work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the input was bad")

    monkeypatch.setattr(EngineFactory, "get", refuse)


@pytest.fixture
def user_files(tmp_path, slicerio_data):
    """Copies of CTChest4 and its segmentation (the package's own files are never handed out)."""
    folder = tmp_path / "in"
    folder.mkdir()
    files = {"volume": folder / "CTChest4.nrrd", "prompts": folder / "Segmentation.seg.nrrd"}
    files["volume"].write_bytes((slicerio_data / "CTChest4.nrrd").read_bytes())
    files["prompts"].write_bytes((slicerio_data / "Segmentation.seg.nrrd").read_bytes())
    files["reference"] = folder / "reference.seg.nrrd"
    files["reference"].write_bytes(files["prompts"].read_bytes())
    return files


def write_volume(node, path) -> Path:
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(node), path
    return Path(path)


@pytest.fixture
def small_ct(ctchest, tmp_path):
    """Three slices of CTChest4 (float voxels) and their lungs as files: cheap to segment.

    Returns ``{"volume", "prompts"}`` paths and the ``make(name, voxels)`` that writes another
    volume on the same grid.
    """
    scene, volume, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], volume)
    matrix = mrml_io.ijk_to_ras(volume)
    matrix[:3, 3] += matrix[:3, 2] * 18  # the grid starts at slice 18
    voxels_ = mrml_io.volume_array(volume)[18:21].astype(np.float32)
    folder = tmp_path / "small"
    folder.mkdir()

    def make(name, array):
        return write_volume(
            builders.add_volume(scene, array, matrix, name), folder / f"{name}.nrrd"
        )

    lungs = builders.add_segmentation(
        scene,
        {
            "right lung": masks[ids["right lung"]][18:21],
            "left lung": masks[ids["left lung"]][18:21],
        },
        matrix,
        "lungs",
    )
    headless.write_segmentation(lungs, folder / "lungs.seg.nrrd")
    return {
        "volume": make("ct", voxels_),
        "prompts": folder / "lungs.seg.nrrd",
        "make": make,
        "voxels": voxels_,
    }


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size, read_only=False)``: a tmpfs of its own (needs root; skipped where it cannot be
    made)."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            pytest.skip(f"a tmpfs cannot be mounted here: {made.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill_up(folder: Path) -> None:
    """Write a file into ``folder`` until its file system has no room left."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass


# -- the table: outputs that would overwrite inputs -----------------------------------------
@pytest.mark.parametrize(
    "option, target, how",
    [
        ("--out", "prompts", "same path"),
        ("--out", "prompts", "symbolic link"),
        ("--out", "prompts", "hard link"),
        ("--out", "reference", "same path"),
        ("--metrics", "volume", "same path"),
        ("--metrics", "volume", "symbolic link"),
        ("--metrics", "checkpoint", "same path"),
        ("--metrics", "out", "same path"),
    ],
)
def test_an_output_that_is_an_input_is_refused(
    samzeroshot, capsys, user_files, tmp_path, no_model, digests, option, target, how
):
    checkpoint = tmp_path / "weights.pth"
    checkpoint.write_bytes(b"weights")  # refused before it is read
    arguments = {
        "--volume": user_files["volume"],
        "--prompts": user_files["prompts"],
        "--reference": user_files["reference"],
        "--checkpoint": checkpoint,
        "--out": tmp_path / "result.seg.nrrd",
        "--metrics": tmp_path / "result.tsv",
    }
    victim = {"out": arguments["--out"], "checkpoint": checkpoint}.get(target) or user_files.get(
        target
    )
    given = victim
    if how != "same path":
        given = tmp_path / f"{how.split()[0]}-to-{victim.name}"
        (os.symlink if how == "symbolic link" else os.link)(victim, given)
    arguments[option] = given
    before = digests(user_files["volume"].parent, checkpoint)
    code, stdout, stderr = samzeroshot(
        "segment", *[item for pair in arguments.items() for item in pair], "--model", "vit_b"
    )
    line = the_error(stderr)
    assert code == 2 and str(given) in line and victim.name in line, line
    assert "overwrite" in line or "same file" in line
    assert digests(user_files["volume"].parent, checkpoint) == before


def test_evaluate_outputs_that_are_inputs_are_refused(
    samzeroshot, capsys, cohort, tmp_path, no_model, digests
):
    images, labels = cohort
    out = tmp_path / "out"
    out.mkdir()
    (out / "slices.csv").symlink_to(labels / "ct.nii.gz")
    before = digests(images, labels)
    code, stdout, stderr = samzeroshot.evaluate(images, labels, out)
    line = the_error(stderr)
    assert code == 2 and "slices.csv" in line and "ct.nii.gz" in line
    for folder in (labels, images):  # the results folder is one of the input folders
        code, stdout, stderr = samzeroshot.evaluate(images, labels, folder)
        assert code == 2 and "give the results a folder of their own" in the_error(stderr)
    assert digests(images, labels) == before


# -- the table: an output folder that cannot be written -------------------------------------
@pytest.fixture
def read_only_folder(tmp_path, tmpfs):
    """A folder nobody can write in: a read-only mount for root, else a folder without write
    permission."""
    if os.geteuid() == 0:
        return tmpfs("64k", read_only=True)
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return folder


@pytest.mark.parametrize(
    "where, message",
    [
        ("read-only folder", "cannot write in this folder"),
        ("under a file", "is a file, not a folder"),
        ("a folder", "is a folder: give a file name"),
        ("read-only file", "the existing file is read-only"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_model_work(
    samzeroshot, capsys, user_files, tmp_path, no_model, request, digests, where, message
):
    out = {
        "under a file": user_files["volume"] / "result.seg.nrrd",
        "a folder": tmp_path / "folder.seg.nrrd",
        "read-only file": tmp_path / "kept.seg.nrrd",
    }.get(where)
    if where == "read-only folder":
        out = request.getfixturevalue("read_only_folder") / "result.seg.nrrd"
    elif where == "a folder":
        out.mkdir()
    elif where == "read-only file":
        out.write_bytes(b"an earlier result")
        out.chmod(0o444)
    before = digests(user_files["volume"].parent)
    code, stdout, stderr = samzeroshot.segment(user_files["volume"], user_files["prompts"], out)
    line = the_error(stderr)
    assert code == 2 and message in line, line
    assert digests(user_files["volume"].parent) == before
    if where == "read-only file":
        assert out.read_bytes() == b"an earlier result"


def test_evaluate_into_a_folder_that_cannot_be_written_is_refused_first(
    samzeroshot, capsys, cohort, read_only_folder, no_model
):
    images, labels = cohort
    code, stdout, stderr = samzeroshot.evaluate(images, labels, read_only_folder / "results")
    assert code == 2 and "cannot write in this folder" in the_error(stderr)


# -- the table: evaluate killed after its first case, then resumed ---------------------------
def test_evaluate_killed_after_its_first_case_resumes_to_the_uninterrupted_results(
    samzeroshot, capsys, cohort3, tmp_path, digests
):
    images, labels = cohort3
    before = digests(images, labels)
    # The uninterrupted run in this process (it also makes the model's ONNX export for the others).
    code, stdout, stderr = samzeroshot.evaluate(images, labels, tmp_path / "whole", *BOX)
    assert code == 0, stderr
    assert sorted(computed_cases(stderr.splitlines())) == ["ct", "xray", "xray2"]

    resumed = tmp_path / "resumed"
    code, killed_run = run_evaluate_process(
        images, labels, resumed, stop=when_first_case_done(signal.SIGKILL)
    )
    assert code == -signal.SIGKILL
    first = computed_cases(killed_run)
    stopped = json.loads((resumed / "summary.json").read_text())
    assert stopped["complete"] is False and stopped["n_cases"] == len(first) < 3

    code, resume_run = run_evaluate_process(images, labels, resumed)
    assert code == 0, resume_run
    assert any(line.startswith(f"resuming: {len(first)} of 3 cases") for line in resume_run), (
        resume_run
    )
    second = computed_cases(resume_run)
    assert sorted(first + second) == [
        "ct",
        "xray",
        "xray2",
    ], "a case was computed twice, or not at all"

    whole, again = (
        json.loads((folder / "summary.json").read_text())
        for folder in (tmp_path / "whole", resumed)
    )
    assert again["complete"] is True and again["n_cases"] == whole["n_cases"] == 3
    assert again["n_scored_slices"] == whole["n_scored_slices"]
    for key in ("mean_dice", "mean_jaccard", "median_dice", "mean_sensitivity", "mean_precision"):
        assert again[key] == pytest.approx(whole[key], abs=1e-9), key
    assert (resumed / "slices.csv").read_text() == (tmp_path / "whole" / "slices.csv").read_text()
    without_seconds = [
        [
            {key: value for key, value in row.items() if key != "seconds"}
            for row in csv.DictReader((folder / "cases.csv").read_text().splitlines())
        ]
        for folder in (tmp_path / "whole", resumed)
    ]
    assert without_seconds[0] == without_seconds[1]
    assert digests(images, labels) == before


def test_ctrl_c_stops_after_the_current_case_with_exit_130_and_keeps_it(cohort3, tmp_path, engine):
    images, labels = cohort3
    out = tmp_path / "out"
    code, lines = run_evaluate_process(
        images, labels, out, stop=when_first_case_done(signal.SIGINT)
    )
    assert code == 130, lines
    assert any("stopping after the current case" in line for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    done = computed_cases(lines)
    assert summary["complete"] is False and summary["n_cases"] == len(done) < 3
    recorded = [line.split(",")[0] for line in (out / "cases.csv").read_text().splitlines()[1:]]
    assert recorded == sorted(done)


def test_a_folder_of_other_settings_is_refused_unless_overwritten(
    samzeroshot, capsys, cohort, tmp_path, no_model
):
    images, labels = cohort
    out = tmp_path / "out"
    settings = {"model": "litemedsam", "strategy": "box", "version": "0"}
    case = CaseResult("ct", [], {"case": "ct", "seconds": 1.0, "n_segmented_slices": 0})
    ResultsFolder(out, settings).record(case)
    with pytest.raises(OutputError, match=r"other settings \(strategy: 'box' there, 'paper' now"):
        ResultsFolder(out, dict(settings, strategy="paper"))
    # The command line refuses before the model is loaded, in one line.
    code, stdout, stderr = samzeroshot.evaluate(images, labels, out, *BOX)
    assert (
        code == 2 and "other settings" in the_error(stderr) and "--overwrite" in the_error(stderr)
    )
    assert ResultsFolder(out, dict(settings, strategy="paper"), overwrite=True).recorded == []
    # With no case recorded (a start that failed, say) the folder simply takes the new settings.
    assert ResultsFolder(out, settings).recorded == []
    assert json.loads((out / "settings.json").read_text()) == settings
    # Results without a record of their settings (an older version's) are not taken over either.
    ResultsFolder(out, settings).record(case)
    (out / "settings.json").unlink()
    with pytest.raises(OutputError, match="without a record of their settings"):
        ResultsFolder(out, settings)


# -- the table: bad voxels --------------------------------------------------------------------
def test_nonfinite_voxels_are_refused_with_their_count_and_slices(
    samzeroshot, capsys, small_ct, no_model, digests
):
    broken = small_ct["voxels"].copy()
    broken[0, 5, 5] = np.nan
    broken[2, 7, 7:9] = np.inf
    volume = small_ct["make"]("nan", broken)
    before = digests(volume, small_ct["prompts"])
    code, stdout, stderr = samzeroshot.segment(
        volume, small_ct["prompts"], volume.parent / "out.seg.nrrd"
    )
    line = the_error(stderr)
    assert (
        code == 2
        and "3 voxels are NaN or infinite (slices 0, 2)" in line
        and "--fill-nonfinite" in line
    )
    assert digests(volume, small_ct["prompts"]) == before


def test_evaluate_refuses_an_image_with_nonfinite_voxels_before_any_model_work(
    samzeroshot, capsys, cohort, tmp_path, no_model, digests
):
    images, labels = cohort
    ct = sitk.ReadImage(str(images / "ct.nrrd"), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(ct)
    array[1, :2, :] = np.nan
    nan = sitk.GetImageFromArray(array)
    nan.CopyInformation(ct)
    (images / "ct.nrrd").unlink()
    sitk.WriteImage(nan, str(images / "ct.nrrd"))
    before = digests(images, labels)
    code, stdout, stderr = samzeroshot.evaluate(images, labels, tmp_path / "out")
    line = the_error(stderr)
    assert (
        code == 2
        and "ct.nrrd" in line
        and f"{2 * array.shape[2]} voxels are NaN or infinite (slice 1)" in line
    )
    assert digests(images, labels) == before


def test_fill_nonfinite_replaces_them_by_the_slice_minimum_and_says_so(
    samzeroshot, capsys, small_ct, tmp_path, digests
):
    broken = small_ct["voxels"].copy()
    broken[1, :3, :3] = np.nan
    volume = small_ct["make"]("nan", broken)
    before = digests(volume)
    out = tmp_path / "out.seg.nrrd"
    code, stdout, stderr = samzeroshot.segment(
        volume, small_ct["prompts"], out, "--fill-nonfinite", *BOX
    )
    assert code == 0, stderr
    assert "9 NaN or infinite voxels (slice 1) were replaced by their slice's minimum" in stderr
    assert out.is_file() and digests(volume) == before


# -- the table: a damaged checkpoint ---------------------------------------------------------
class Payload:
    """Not a tensor: a checkpoint holding it must not be unpickled."""


def checkpoint_file(kind: str, folder: Path) -> Path:
    from SAMZeroShotLib import models

    path = folder / f"{kind.replace(' ', '-')}.pth"
    real = models.litemedsam_checkpoint()
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(real.read_bytes()[:3_000_000])
    elif kind == "pickled code":
        torch.save({"model": Payload()}, path)
    elif kind == "another architecture":
        path.write_bytes(real.read_bytes())  # LiteMedSAM weights named as a ViT-B file
    elif kind == "a folder":
        path.mkdir()
    elif kind == "official name, wrong content":
        path = folder / "sam_vit_b_01ec64.pth"
        path.write_bytes(b"not the published file")
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("random bytes", "not a SAM checkpoint, or the file is damaged"),
        ("empty", "not a SAM checkpoint, or the file is damaged"),
        ("truncated", "not a SAM checkpoint, or the file is damaged"),
        ("pickled code", "not a SAM checkpoint, or the file is damaged"),
        ("another architecture", "not a vit_b checkpoint"),
        ("a folder", "is a folder"),
        ("official name, wrong content", "incomplete or not this model"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_it(
    samzeroshot, capsys, small_ct, tmp_path, digests, kind, message
):
    checkpoint = checkpoint_file(kind, tmp_path)
    model = "sam_vit_b" if kind.startswith("official") else "vit_b"
    before = digests(small_ct["volume"], small_ct["prompts"], checkpoint)
    code, stdout, stderr = samzeroshot.segment(
        small_ct["volume"],
        small_ct["prompts"],
        tmp_path / "out.seg.nrrd",
        "--model",
        model,
        "--checkpoint",
        checkpoint,
    )
    line = the_error(stderr)
    assert code == 2 and message in line and checkpoint.name in line, line
    assert "weights_only" not in stderr and "PyTorch 2" not in stderr
    assert digests(small_ct["volume"], small_ct["prompts"], checkpoint) == before


# -- the table: bad inputs already refused in one line (kept) --------------------------------
def bad_volume(kind: str, user_files, tmp_path) -> Path:
    real = user_files["volume"]
    path = tmp_path / f"{kind.replace(' ', '-')}.nrrd"
    if kind == "text":
        path.write_text("a note, not an image\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(real.read_bytes()[:20_000])
    elif kind == "a folder":
        path.mkdir()
    elif kind == "oversized header":
        path.write_bytes(
            b"NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 100000\n"
            b"encoding: raw\nendian: little\n\n" + bytes(100)
        )
    elif kind == "4D":  # a 2-value series of 3 x 4 x 5 volumes
        path.write_bytes(
            b"NRRD0004\ntype: float\ndimension: 4\nsizes: 2 3 4 5\nkinds: list domain domain"
            b" domain\nencoding: ascii\n\n" + b" ".join([b"1.0"] * 120) + b"\n"
        )
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "volume file not found"),
        ("a folder", "is a folder, not a volume file"),
        ("text", "not a readable volume"),
        ("empty", "not a readable volume"),
        ("truncated", "not a readable volume"),
        ("oversized header", "not a readable volume"),
        ("4D", "2 values per voxel"),
    ],
)
def test_a_bad_volume_is_one_line(
    samzeroshot, capsys, user_files, tmp_path, no_model, digests, kind, message
):
    volume = bad_volume(kind, user_files, tmp_path)
    before = digests(user_files["volume"].parent, *([volume] if volume.exists() else []))
    code, stdout, stderr = samzeroshot.segment(
        volume, user_files["prompts"], tmp_path / "out.seg.nrrd"
    )
    line = the_error(stderr)
    assert code == 2 and message in line and volume.name.split(".")[0] in line, line
    assert digests(user_files["volume"].parent, *([volume] if volume.exists() else [])) == before


@pytest.mark.parametrize(
    "kind, message",
    [
        (
            "truncated",
            "not a readable segmentation",
        ),  # Slicer's reader used to abort the whole process
        ("text", "not a readable segmentation"),
        ("off the volume", "do not overlap"),
    ],
)
def test_a_bad_prompt_segmentation_is_one_line(
    samzeroshot, capsys, user_files, scene_app, tmp_path, no_model, digests, kind, message
):
    prompts = tmp_path / f"{kind.replace(' ', '-')}.seg.nrrd"
    if kind == "truncated":
        prompts.write_bytes(user_files["prompts"].read_bytes()[:20_000])
    elif kind == "text":
        prompts.write_text("a note\n")
    else:
        scene, app = scene_app
        far = np.eye(4)
        far[:3, 3] = 5000.0
        headless.write_segmentation(
            builders.add_segmentation(scene, {"lung": np.ones((2, 2, 2), bool)}, far, "far"),
            prompts,
        )
    before = digests(user_files["volume"].parent, prompts)
    code, stdout, stderr = samzeroshot.segment(
        user_files["volume"], prompts, tmp_path / "out.seg.nrrd"
    )
    line = the_error(stderr)
    assert code == 2 and message in line, line
    assert digests(user_files["volume"].parent, prompts) == before


@pytest.mark.parametrize(
    "option, message",
    [
        (["--segments", "spleen"], "has no segment 'spleen'"),
        (["--model", "sam_vit_x"], "Unknown model 'sam_vit_x'"),
        (["--strategy", "magic"], "Unknown strategy 'magic'"),
        (["--device", "tpu"], "Unknown device 'tpu'"),
        (["--window", "bone"], "Unknown window 'bone'"),
        (["--backend", "magic"], "Unknown backend 'magic'"),
        (["--out", "o.nrrd"], "must be a .seg.nrrd file"),
    ],
)
def test_unknown_names_are_one_line(
    samzeroshot, capsys, user_files, tmp_path, no_model, digests, option, message
):
    before = digests(user_files["volume"].parent)
    code, stdout, stderr = samzeroshot.segment(
        user_files["volume"], user_files["prompts"], tmp_path / "out.seg.nrrd", *option
    )
    assert code == 2 and message in the_error(stderr)
    assert digests(user_files["volume"].parent) == before


# -- slips found beyond the table ---------------------------------------------------------------
def test_the_volume_given_as_its_own_prompts_is_refused(
    samzeroshot, capsys, user_files, tmp_path, no_model, digests
):
    before = digests(user_files["volume"].parent)
    code, stdout, stderr = samzeroshot.segment(
        user_files["volume"], user_files["volume"], tmp_path / "out.seg.nrrd"
    )
    assert code == 2 and "the prompt segmentation is the volume itself" in the_error(stderr)
    # A copy of the CT read as labels has thousands of them (it used to end in an internal error
    # after minutes, when thousands of prompts did not fit the decoder).
    copy = tmp_path / "copy of the CT.nrrd"
    copy.write_bytes(user_files["volume"].read_bytes())
    code, stdout, stderr = samzeroshot.segment(
        user_files["volume"], copy, tmp_path / "out.seg.nrrd"
    )
    assert code == 2 and "is it an image rather than a segmentation?" in the_error(stderr)
    assert digests(user_files["volume"].parent) == before


def test_an_image_that_is_its_own_mask_is_refused(samzeroshot, capsys, cohort, tmp_path, no_model):
    images, labels = cohort  # --masks naming the images folder: every PNG would be its own mask
    code, stdout, stderr = samzeroshot.evaluate(images, images, tmp_path / "out")
    assert code == 2 and "ct.nrrd: is its own mask" in the_error(stderr)


# -- paths a user may well type ----------------------------------------------------------------
def test_unicode_and_spaces_in_paths_work_and_an_earlier_output_is_replaced_whole(
    samzeroshot, capsys, small_ct, tmp_path
):
    out = tmp_path / "résultats du jour" / "poumons ü.seg.nrrd"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    metrics = out.parent / "métriques.tsv"
    code, stdout, stderr = samzeroshot.segment(
        small_ct["volume"], small_ct["prompts"], out, "--metrics", metrics, *BOX
    )
    assert code == 0, stderr
    assert out.read_bytes().startswith(b"NRRD") and metrics.read_text().startswith("scope\t")
    assert sorted(p.name for p in out.parent.iterdir()) == ["métriques.tsv", "poumons ü.seg.nrrd"]


# -- the table: a full disk ---------------------------------------------------------------------
def test_a_full_disk_leaves_the_earlier_complete_outputs_intact(
    samzeroshot, capsys, small_ct, cohort, tmpfs, digests, add_mirrored_radiograph
):
    disk = tmpfs("4m")
    out, metrics, results = disk / "lungs.seg.nrrd", disk / "lungs.tsv", disk / "evaluation"
    images, labels = cohort
    code, stdout, stderr = samzeroshot.segment(
        small_ct["volume"], small_ct["prompts"], out, "--metrics", metrics, *BOX
    )
    assert code == 0, stderr
    code, stdout, stderr = samzeroshot.evaluate(images, labels, results, *BOX)
    assert code == 0, stderr
    earlier = {path: Path(path).read_bytes() for path in digests(disk)}
    # One more case for the evaluation to add, then no room left.
    add_mirrored_radiograph(images, labels)
    fill_up(disk)

    code, stdout, stderr = samzeroshot.segment(
        small_ct["volume"], small_ct["prompts"], out, "--metrics", metrics, *BOX
    )
    assert (
        code == 2
        and "could not be written" in the_error(stderr)
        and "left as it was" in the_error(stderr)
    )
    code, stdout, stderr = samzeroshot.evaluate(images, labels, results, *BOX)
    line = the_error(stderr)
    assert code == 2 and "No space left on device" in line, line

    for path, content in earlier.items():
        now = Path(path).read_bytes()
        if path.endswith(
            (".csv", ".jsonl")
        ):  # appended to at most: every earlier row is still there
            assert now.startswith(content), path
        else:
            assert now == content, path
    assert json.loads((results / "summary.json").read_text())["complete"] is True
    assert not list(disk.rglob(".*partial*")), "a temporary file was left behind"
