"""Each finished case is kept in the results folder and reported; a failed one is listed."""

from pathlib import Path

from SAMZeroShotLib.cases import Case
from SAMZeroShotLib.parameters import Parameters
from SAMZeroShotLib.recorder import Recorder, engine_about
from SAMZeroShotLib.results import CaseResult, ResultsFolder


class Seen:
    """A progress view that keeps what it is told."""

    def __init__(self, total, done):
        self.total, self.done, self.lines = total, done, []

    def note(self, line):
        self.lines.append(line)

    def advance(self, line="", slices=1, items=1):
        self.done += items
        self.lines.append(line)

    def close(self):
        pass


def result(name: str) -> CaseResult:
    scores = {"dice": 0.5, "jaccard": 1 / 3, "sensitivity": 0.5, "precision": 0.5}
    row = {"case": name, "slice": 0, **scores, "prompt_only_dice": 0.4}
    case_row = {"case": name, "mean_dice": 0.5, "n_scored_slices": 1, "n_segmented_slices": 1}
    return CaseResult(name, [row], {**case_row, "seconds": 2.0}, notes=["a note"])


def test_cases_are_kept_reported_and_a_failure_listed(tmp_path):
    cases = [Case(name, Path(f"{name}.png"), ()) for name in ("a", "b")]
    views = []
    recorder = Recorder(
        cases,
        ResultsFolder(tmp_path, {"model": "m"}),
        Parameters(),
        None,
        progress=lambda total, done: views.append(Seen(total, done)) or views[-1],
    )
    assert recorder.todo == ["a", "b"]
    recorder.engine_used({"device": "cpu", "backend": "torch"})
    recorder.engine_used({"device": "cuda", "backend": "torch"})
    recorder.keep(result("a"))
    recorder.fail(cases[1], "worker lost")
    summary = recorder.finish()
    assert summary["n_cases"] == 1 and summary["mean_dice"] == 0.5 and not summary["complete"]
    assert summary["failed"] == [{"case": "b", "file": "b.png", "reason": "worker lost"}]
    assert summary["device"] == "cpu, cuda" and summary["backend"] == "torch"
    lines = views[0].lines
    assert lines[0] == "a: a note" and lines[1].startswith("a: mean Dice 0.5000 over 1 slices")
    assert lines[2] == "b: failed: worker lost"


def test_the_engine_is_described_by_where_and_how_it_runs():
    class Engine:
        device, precision, backend, threads = "cpu", "fp32", "torch", 4

    assert engine_about(Engine()) == {
        "device": "cpu",
        "precision": "fp32",
        "backend": "torch",
        "threads": "4",
    }
