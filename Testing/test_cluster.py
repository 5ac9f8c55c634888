"""Cohorts on a Dask cluster (real local clusters on the loopback address) and the progress shown.

`--workers 2` must give the rows of one worker; a worker killed in the middle of a case loses that
case only (retried once, then listed as failed); a scheduler that does not answer is one line.
"""

import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from SAMZeroShotLib import cli, cluster
from SAMZeroShotLib.engines import EngineFactory

LIBRARY = Path(__file__).resolve().parents[1] / "SAMZeroShot"
BOX = ("--strategy", "box")  # one call per lung: the cheapest strategy, same code paths
#: Seconds a scheduler address that does not answer may take to be refused: the connection
#: timeout plus the command's own start (reading the cohort), with margin on a busy machine.
REFUSED_WITHIN_S = cluster.CONNECT_TIMEOUT_S + 15


def journal_rows(folder: Path) -> dict:
    """Each case's slice rows at full precision, from the results folder's journal."""
    cases = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    return {case["case"]: case["slices"] for case in cases}


def case_of(key: str) -> str:
    """The case name in a cluster task's key ``case-<name>-<run>-<try>``."""
    return key[len(cluster.KEY_PREFIX) :].rsplit("-", 2)[0]


# -- the same rows -------------------------------------------------------------------------------
def test_two_local_workers_give_the_rows_of_one(samzeroshot, capsys, cohort3, tmp_path):
    images, labels = cohort3
    folders = {}
    for workers in ("1", "2"):
        folders[workers] = tmp_path / f"workers{workers}"
        code, stdout, stderr = samzeroshot.evaluate(
            images, labels, folders[workers], "--workers", workers, *BOX
        )
        assert code == 0, stderr
    one, two = (journal_rows(folders[w]) for w in ("1", "2"))
    assert sorted(one) == sorted(two) == ["ct", "xray", "xray2"]
    for case in one:
        assert [r["slice"] for r in one[case]] == [r["slice"] for r in two[case]]
        for a, b in zip(one[case], two[case], strict=True):
            assert (
                abs(a["dice"] - b["dice"]) <= 1e-9 and abs(a["jaccard"] - b["jaccard"]) <= 1e-9
            ), (case, a, b)
            assert a["predicted_pixels"] == b["predicted_pixels"]
    # Rows sorted by case and slice, whatever order the workers finished in.
    assert (folders["1"] / "slices.csv").read_text() == (folders["2"] / "slices.csv").read_text()
    summary = json.loads((folders["2"] / "summary.json").read_text())
    assert summary["complete"] is True and summary["failed"] == []
    # The workers chose the runtime this CPU gets in one process (from its flags, not from threads).
    alone = json.loads((folders["1"] / "summary.json").read_text())
    assert summary["backend"] == alone["backend"] and summary["device"] == "cpu"


# -- a worker that dies ----------------------------------------------------------------------------
def kill_workers_running(client, kills: dict, stop: threading.Event, killed: list) -> None:
    """Kill (SIGKILL) the worker process running case ``name``, ``kills[name]`` times."""
    dead = set()
    while not stop.is_set():
        for worker, keys in client.processing().items():
            for name in map(case_of, keys):
                if kills.get(name, 0) > 0 and worker not in dead:
                    try:
                        pid = client.run(os.getpid, workers=[worker])[worker]
                    except Exception:  # the worker is gone already
                        continue
                    os.kill(pid, signal.SIGKILL)
                    dead.add(worker)
                    kills[name] -= 1
                    killed.append(name)
        stop.wait(0.2)


def test_a_worker_killed_mid_case_loses_only_that_case(samzeroshot, capsys, cohort3, tmp_path):
    images, labels = cohort3
    out = tmp_path / "out"
    command = ("evaluate", "--images", images, "--masks", labels, "--out", out, *BOX)
    # ct: its worker dies once, the case is retried and finishes; xray2: both its workers die.
    kills, killed, stop = {"ct": 1, "xray2": 2}, [], threading.Event()
    with cluster.local_client(2) as client:
        address = client.scheduler.address
        killer = threading.Thread(
            target=kill_workers_running, args=(client, kills, stop, killed), daemon=True
        )
        killer.start()
        try:
            code, stdout, stderr = samzeroshot(*command, "--scheduler", address)
        finally:
            stop.set()
            killer.join()
        assert sorted(killed) == ["ct", "xray2", "xray2"], (killed, stderr)
        assert code == cli.EXIT_CASES_FAILED, stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["complete"] is False and summary["n_cases"] == 2
        assert [(f["case"], Path(f["file"]).name) for f in summary["failed"]] == [
            ("xray2", "xray2.png")
        ]
        assert "stopped 2 times" in summary["failed"][0]["reason"]
        assert f"failed {images / 'xray2.png'}: the worker computing it stopped 2 times" in stderr
        rows = journal_rows(out)
        assert sorted(rows) == ["ct", "xray"] and len(rows["ct"]) == 3
        assert min(r["dice"] for r in rows["ct"] + rows["xray"]) > 0.5  # measured 0.66-0.93

        # The same command again computes the failed case only, on workers that kept their model.
        code, stdout, stderr = samzeroshot(*command, "--scheduler", address)
    assert code == 0, stderr
    assert "resuming: 2 of 3 cases" in stderr and re.search(r"^case 3/3 xray2: ", stderr, re.M), (
        stderr
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["failed"] == [] and summary["n_cases"] == 3


# -- a scheduler that does not answer --------------------------------------------------------------
@pytest.fixture(params=["nothing listens", "a listener that never answers"])
def dead_address(request):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if request.param == "nothing listens":
            listener.close()
        else:
            listener.listen(4)  # connections are accepted by the kernel, and never answered
        yield f"tcp://127.0.0.1:{port}"


def test_a_scheduler_that_does_not_answer_is_one_line_within_the_limit(
    samzeroshot, capsys, cohort, tmp_path, dead_address, monkeypatch
):
    monkeypatch.setattr(EngineFactory, "get", lambda *a, **k: pytest.fail("the model was loaded"))
    images, labels = cohort
    started = time.monotonic()
    code, stdout, stderr = samzeroshot.evaluate(
        images, labels, tmp_path / "out", "--scheduler", dead_address, *BOX
    )
    elapsed = time.monotonic() - started
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert (
        lines[0]
        == f"samzeroshot evaluate: error: {dead_address}: no Dask scheduler answered within "
        f"{cluster.CONNECT_TIMEOUT_S} s: start one (dask scheduler) or check the address"
    )
    assert elapsed < REFUSED_WITHIN_S, elapsed


@pytest.mark.parametrize(
    "options, message",
    [
        (["--workers", "0"], "--workers 0: give a whole number of worker processes, 1 or more"),
        (["--workers", "two"], "--workers two: give a whole number"),
        (
            ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
            "give --workers or --scheduler, not both",
        ),
        (["--scheduler", "tcp//nowhere"], "tcp//nowhere: not a scheduler address"),
    ],
)
def test_worker_options_are_checked_in_one_line(
    samzeroshot, capsys, cohort, tmp_path, monkeypatch, options, message
):
    monkeypatch.setattr(EngineFactory, "get", lambda *a, **k: pytest.fail("the model was loaded"))
    images, labels = cohort
    code, stdout, stderr = samzeroshot.evaluate(images, labels, tmp_path / "out", *options)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and message in stderr, stderr


# -- one worker, and what a terminal shows ---------------------------------------------------------
def test_one_worker_imports_no_dask_and_a_terminal_gets_a_progress_bar(cohort, tmp_path):
    images, labels = cohort
    (images / "ct.nrrd").unlink()  # the radiograph alone: one case
    (labels / "ct.nii.gz").unlink()
    script = (
        "import sys\nfrom SAMZeroShotLib import cli\n"
        f"code = cli.main(['evaluate', '--images', {str(images)!r}, '--masks', {str(labels)!r}, "
        f"'--out', {str(tmp_path / 'out')!r}, '--strategy', 'box'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
        "sys.exit(code)\n"
    )
    terminal, stderr_end = pty.openpty()
    fcntl.ioctl(
        terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0)
    )  # a terminal 120 columns wide
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_end,
        env=dict(os.environ, PYTHONPATH=str(LIBRARY)),
    )
    os.close(stderr_end)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    stdout = process.communicate(timeout=600)[0].decode()
    screen = shown.decode(errors="replace")
    assert process.returncode == 0, screen
    assert stdout.splitlines()[-1] == "[]", stdout  # no Dask module was imported
    assert re.search(r"100%\|[^|]*\| 1/1 cases \[\d\d:\d\d<\d\d:\d\d, [\d.]+ slices/s\]", screen), (
        screen
    )
    assert "case 1/1" not in screen  # the bar replaces the log lines
