"""`samzeroshot compare` on hand-made evaluate folders with a known difference and interval
width."""

import csv
import json

import numpy as np
import pytest

from SAMZeroShotLib import compare, errors


def folder(path, rows, strategy):
    """An evaluate output folder holding ``rows`` of ``(case, slice, dice)``."""
    path.mkdir(parents=True)
    with open(path / "slices.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "slice", "dice", "jaccard"])
        for case, number, dice in rows:
            writer.writerow([case, number, f"{dice:.6f}", f"{dice / (2 - dice):.6f}"])
    (path / "summary.json").write_text(
        json.dumps({"strategy": strategy, "mean_dice": float(np.mean([r[2] for r in rows]))})
    )
    return path


@pytest.fixture
def forty_cases(tmp_path):
    """40 one-slice cases; B beats A by 0.03 on half of them and loses by 0.01 on the others."""
    a = [(f"case{n:02d}", 0, 0.8) for n in range(40)]
    b = [(case, s, dice + (0.03 if n % 2 == 0 else -0.01)) for n, (case, s, dice) in enumerate(a)]
    return folder(tmp_path / "a", a, "box"), folder(tmp_path / "b", b, "flip4")


def test_difference_interval_and_wins_of_forty_cases(forty_cases):
    result = compare.compare(*forty_cases)
    assert result["difference"] == pytest.approx(0.01, abs=1e-6)
    assert result["a"]["mean_dice"] == pytest.approx(0.8) and result["b"][
        "mean_dice"
    ] == pytest.approx(0.81)
    # Paired differences with standard deviation 0.02 over 40 cases: the normal 95 % interval is
    # 0.01 +- 1.96 * 0.02 / sqrt(40), 0.0124 wide; the bootstrap's should be close to that.
    low, high = result["interval"]
    assert high - low == pytest.approx(2 * 1.96 * 0.02 / np.sqrt(40), rel=0.12)
    assert low < 0.01 < high and low > 0
    assert result["verdict"] == "B better" and result["unit"] == "case" and result["n_units"] == 40
    assert result["wins"] == {"a": 20, "b": 20, "ties": 0}
    assert compare.compare(*forty_cases)["interval"] == result["interval"]  # the seed is fixed


def test_a_constant_shift_has_a_zero_width_interval_and_ties_are_counted(tmp_path):
    a = [(f"c{n}", s, 0.5 + 0.01 * n) for n in range(5) for s in range(3)]
    b = [(case, s, dice + 0.02 if case != "c4" else dice) for case, s, dice in a]
    result = compare.compare(folder(tmp_path / "a", a, "box"), folder(tmp_path / "b", b, "crop"))
    assert result["difference"] == pytest.approx(0.016, abs=1e-6)  # pooled over the 15 slices
    assert result["wins"] == {"a": 0, "b": 4, "ties": 1}
    b_all = [(case, s, dice + 0.02) for case, s, dice in a]
    shifted = compare.compare(tmp_path / "a", folder(tmp_path / "b2", b_all, "crop"))
    assert shifted["interval"] == pytest.approx([0.02, 0.02], abs=1e-6)


def test_one_case_is_resampled_in_blocks_of_consecutive_slices(tmp_path):
    slices = list(range(20, 32)) + list(range(40, 43))  # 12 consecutive slices, a gap, 3 more
    a = [("volume", s, 0.9) for s in slices]
    b = [("volume", s, 0.9 + (0.02 if s < 26 else -0.01)) for s in slices]
    result = compare.compare(folder(tmp_path / "a", a, "box"), folder(tmp_path / "b", b, "zoom"))
    assert result["unit"].startswith("block of up to 5 consecutive slices")
    # Blocks: 20-24, 25-29, 30-31 (the gap ends it), 40-42.
    assert result["n_units"] == 4 and result["wins"] == {"a": 3, "b": 1, "ties": 0}
    low, high = result["interval"]
    assert (
        low < result["difference"] < high
        and low < 0 < high
        and result["verdict"] == "no difference shown"
    )


def test_cli_writes_compare_json_inside_b_or_where_asked(
    samzeroshot, capsys, forty_cases, tmp_path
):
    a, b = forty_cases
    code, stdout, stderr = samzeroshot("compare", a, b)
    assert code == 0, stderr
    written = json.loads((b / "compare.json").read_text())
    assert written["difference"] == pytest.approx(0.01, abs=1e-6)
    assert "B - A: +0.0100" in stdout and "B better" in stdout
    code, _, _ = samzeroshot("compare", a, b, "--out", tmp_path / "reports")
    assert code == 0 and (tmp_path / "reports" / "compare.json").is_file()
    code, _, _ = samzeroshot("compare", a, b, "--out", tmp_path / "box-vs-flip4.json")
    assert code == 0 and (tmp_path / "box-vs-flip4.json").is_file()


def test_folders_that_scored_different_cases_are_refused_in_one_line(
    samzeroshot, capsys, forty_cases, tmp_path
):
    a, _ = forty_cases
    other = folder(tmp_path / "other", [(f"case{n:02d}", 0, 0.8) for n in range(1, 41)], "box")
    code, stdout, stderr = samzeroshot("compare", a, other)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "scored different cases" in lines[0] and "case00" in lines[0] and "case40" in lines[0]
    assert not (other / "compare.json").exists()
    code, _, stderr = samzeroshot("compare", a, tmp_path / "nowhere")
    assert code == 2 and "no slices.csv" in stderr and len(stderr.strip().splitlines()) == 1


def test_same_cases_with_different_slices_are_refused(tmp_path):
    a = folder(tmp_path / "a", [("v", s, 0.9) for s in range(5)], "box")
    b = folder(tmp_path / "b", [("v", s, 0.9) for s in range(1, 6)], "box")
    with pytest.raises(errors.CompareError, match="different slices of v"):
        compare.compare(a, b)
