"""The results folder of an evaluation: a write stopped halfway is repaired on reopening; one
writer at a time."""

import os
import pickle

import pytest

from SAMZeroShotLib.errors import FolderInUse, OutputError
from SAMZeroShotLib.files import LOCK_FILE, append_synced
from SAMZeroShotLib.results import CaseResult, ResultsFolder

CASE = CaseResult("a", [], {"case": "a", "seconds": 1.0, "n_segmented_slices": 0})


def test_a_stopped_write_is_repaired_when_the_folder_is_opened_again(tmp_path, digests):
    out = tmp_path / "out"
    settings = {"model": "m"}
    row = {
        "case": "a",
        "slice": 0,
        "dice": 0.5,
        "jaccard": 1 / 3,
        "sensitivity": 0.5,
        "precision": 0.5,
        "prompt_only_dice": 0.4,
    }
    folder = ResultsFolder(out, settings)
    folder.plan(["a", "b"])
    folder.record(CaseResult("a", [row], {"case": "a", "seconds": 2.0, "n_segmented_slices": 1}))
    tables = digests(out / "slices.csv", out / "cases.csv")
    # What a kill in the middle of case b's writes leaves: half a journal line, half a table row.
    append_synced(out / "journal.jsonl", '{"case": "b", "sli')
    append_synced(out / "slices.csv", "b,0,0.7")
    (out / ".1234abcd.partial-summary.json").write_text("{")
    folder.close()
    again = ResultsFolder(out, settings)
    assert again.recorded == ["a"] and again.results["a"].slice_rows == [row]
    assert (out / "journal.jsonl").read_text().count("\n") == 1
    assert digests(out / "slices.csv", out / "cases.csv") == tables
    assert not list(out.glob(".*partial*"))


def test_a_results_folder_in_use_is_refused_and_left_as_it_is(tmp_path, digests):
    out = tmp_path / "out"
    with ResultsFolder(out, {"model": "m"}) as first:
        first.plan(["a"])
        first.record(CASE)
        before = digests(out)
        with pytest.raises(FolderInUse, match=f"process {os.getpid()} on this machine"):
            ResultsFolder(out, {"model": "m"}, overwrite=True)
        assert digests(out) == before
        with pytest.raises(TypeError, match="belongs to the process"):  # never sent to a worker
            pickle.dumps(first)
    assert not (out / LOCK_FILE).exists()
    with ResultsFolder(out, {"model": "m"}) as again:
        assert again.recorded == ["a"]


def test_an_opening_that_fails_gives_the_lock_back(tmp_path):
    out = tmp_path / "out"
    with ResultsFolder(out, {"model": "m"}) as folder:
        folder.record(CASE)
    with pytest.raises(OutputError, match="other settings"):
        ResultsFolder(out, {"model": "other"})
    assert not (out / LOCK_FILE).exists()
    ResultsFolder(out, {"model": "m"}).close()
