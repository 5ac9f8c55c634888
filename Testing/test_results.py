"""The results folder of an evaluation: a write stopped halfway is repaired on reopening."""

from SAMZeroShotLib.files import append_synced
from SAMZeroShotLib.results import CaseResult, ResultsFolder


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
    again = ResultsFolder(out, settings)
    assert again.recorded == ["a"] and again.results["a"].slice_rows == [row]
    assert (out / "journal.jsonl").read_text().count("\n") == 1
    assert digests(out / "slices.csv", out / "cases.csv") == tables
    assert not list(out.glob(".*partial*"))
