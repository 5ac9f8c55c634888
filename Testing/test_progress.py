"""Progress on the command line: a log line per case or a bar, slices per second, time left."""

import io
import re

from SAMZeroShotLib import progress


def test_a_log_gets_one_line_per_case_with_the_rate_and_the_time_left():
    stream = io.StringIO()
    view = progress.on_stderr(3, done=1, stream=stream)  # a StringIO is no terminal
    view.note("resuming: 1 of 3 cases are already in out")
    view.advance("b: mean Dice 0.9000 over 4 slices (2.0 s)", slices=4)
    view.advance("c: mean Dice 0.8000 over 1 slices (1.0 s)", slices=1)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "resuming: 1 of 3 cases are already in out"
    assert re.fullmatch(
        r"case 2/3 b: mean Dice 0\.9000 over 4 slices \(2\.0 s\); [\d.]+ slices/s, about \d+ s"
        r" left",
        lines[1],
    ), lines[1]
    assert re.fullmatch(r"case 3/3 c: .*; [\d.]+ slices/s", lines[2]), lines[2]


def test_a_bar_counts_cases_and_shows_slices_per_second():
    stream = io.StringIO()
    bar = progress.Bar(2, unit="case", stream=stream)
    bar.advance("a", slices=3)
    bar.note("a note above the bar")
    bar.advance("b", slices=1)
    bar.close()
    text = stream.getvalue()
    assert "a note above the bar" in text and "2/2 cases" in text and "slices/s" in text, text
