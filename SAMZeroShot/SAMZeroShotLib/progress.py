"""Progress of a long run on the command line: items (cases or slices) done, slices per second, time
left.

On a terminal a bar (tqdm) that updates in place; in a log (stderr redirected to a file or a
pipe) one line per item, so that the log reads the same whoever watches it. :class:`Counter`
counts without showing anything (for callers of the library).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Counter:
    """Counts finished items of a run: ``total`` in all, ``done`` of them finished before it
    started."""

    def __init__(self, total: int, done: int = 0, unit: str = "case"):
        self.total, self.done, self.unit = total, done, unit
        self.started_with = done
        self.slices = 0
        self.started = self.first_finished = time.perf_counter()

    def advance(self, line: str = "", slices: int = 1, items: int = 1) -> None:
        """``items`` more finished (one line for them); ``line`` says what they gave, ``slices`` how
        many slices they segmented."""
        if self.done == self.started_with:
            self.first_finished = time.perf_counter()
        self.done += items
        self.slices += slices
        self._show(line, items)

    def note(self, line: str) -> None:
        """A message about the run (kept apart from the bar)."""

    def close(self) -> None:
        """The run ended (finished or not)."""

    # -- what both views show -----------------------------------------------------------
    def slices_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.slices / elapsed if elapsed > 0 else 0.0

    def seconds_left(self) -> float | None:
        """From the pace since the first item finished (the first also paid for loading the
        model)."""
        finished = self.done - self.started_with
        if finished <= 0:
            return None
        if finished == 1:
            return (time.perf_counter() - self.started) * (self.total - self.done)
        return (
            (time.perf_counter() - self.first_finished) / (finished - 1) * (self.total - self.done)
        )

    def _show(self, line: str, items: int) -> None:
        pass


class LogLines(Counter):
    """One line per finished item: ``case 3/20 name: ...; 1.2 slices/s, about 4 min 10 s left``."""

    def __init__(self, total: int, done: int = 0, unit: str = "case", stream: TextIO | None = None):
        super().__init__(total, done, unit)
        self.stream = stream

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def note(self, line: str) -> None:
        self._print(line)

    def _show(self, line: str, items: int) -> None:
        left = self.seconds_left()
        timing = f"{self.slices_per_second():.2f} slices/s" + (
            f", about {_duration(left)} left" if left is not None and self.done < self.total else ""
        )
        self._print(f"{self.unit} {self.done}/{self.total} {line}".rstrip() + f"; {timing}")


class Bar(Counter):
    """A tqdm bar: items done of the total, time spent and left, slices per second."""

    def __init__(self, total: int, done: int = 0, unit: str = "case", stream: TextIO | None = None):
        super().__init__(total, done, unit)
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=done,
            unit=unit,
            file=stream or sys.stderr,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
            + unit
            + "s [{elapsed}<{remaining}{postfix}]",
        )
        self.bar.set_postfix_str("", refresh=False)

    def note(self, line: str) -> None:
        self.bar.write(line, file=self.bar.fp)

    def _show(self, line: str, items: int) -> None:
        self.bar.set_postfix_str(f"{self.slices_per_second():.2f} slices/s", refresh=False)
        self.bar.update(items)

    def close(self) -> None:
        self.bar.close()


def on_stderr(
    total: int, done: int = 0, unit: str = "case", stream: TextIO | None = None
) -> Counter:
    """A :class:`Bar` when ``stream`` (default stderr) is a terminal, else :class:`LogLines`."""
    stream = stream or sys.stderr
    view = Bar if stream.isatty() else LogLines
    return view(total, done, unit, stream)
