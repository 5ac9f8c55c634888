"""Output files written safely: an append cut short leaves the file as it was; a folder has one
writer at a time."""

import json
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from SAMZeroShotLib.errors import FolderInUse, OutputError
from SAMZeroShotLib.files import LOCK_FILE, FolderLock, append_synced, write_bytes_atomically

LIBRARY = Path(__file__).resolve().parents[1] / "SAMZeroShot"
# A process that takes the lock of the folder in argv[1], says what happened, and keeps the lock
# until its stdin closes (then gives it back).
TAKE_LOCK = """
import sys
from SAMZeroShotLib.errors import FolderInUse
from SAMZeroShotLib.files import FolderLock
try:
    lock = FolderLock(sys.argv[1]).acquire()
except FolderInUse:
    print("in use", flush=True)
else:
    print("took it", flush=True)
    sys.stdin.read()
    lock.release()
"""


def test_an_append_cut_short_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    path.write_bytes(b"header\r\nrow 1\r\n")
    real_write = os.write

    def disk_full_halfway(descriptor, data):  # a stand-in for a disk that fills up mid-write
        real_write(descriptor, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full_halfway)
    with pytest.raises(OSError, match="No space"):
        append_synced(path, "row 2 that does not fit\r\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"header\r\nrow 1\r\n"


def test_bytes_replace_a_file_whole_and_a_failed_write_leaves_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "model.bin"
    write_bytes_atomically(target, b"old")
    write_bytes_atomically(target, b"new content")
    assert target.read_bytes() == b"new content"

    def fail_after_writing(self, data):
        Path.write_text(self, "half")
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", fail_after_writing)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomically(target, b"never")
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def locker(folder) -> subprocess.Popen:
    """Another process running :data:`TAKE_LOCK` on ``folder``."""
    return subprocess.Popen(
        [sys.executable, "-c", TAKE_LOCK, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(LIBRARY)},
    )


def dead_pid() -> int:
    """The process number of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(folder: Path, **record) -> Path:
    path = folder / LOCK_FILE
    path.write_text(json.dumps({"started": "2024-01-02T03:04:05+00:00", "token": "x", **record}))
    return path


def test_a_lock_is_a_file_naming_its_process_and_is_removed_when_given_back(tmp_path):
    with FolderLock(tmp_path) as lock:
        assert lock.held
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert datetime.fromisoformat(record["started"]).utcoffset().total_seconds() == 0
        assert record["token"] == lock.token
    assert not lock.held and not (tmp_path / LOCK_FILE).exists()
    assert FolderLock(tmp_path).acquire().held  # free again


def test_a_held_lock_refuses_a_second_writer_naming_the_holder(tmp_path):
    holder = locker(tmp_path)
    try:
        assert holder.stdout.readline() == "took it\n"
        with pytest.raises(FolderInUse) as refused:
            FolderLock(tmp_path).acquire()
        message = str(refused.value)
        assert str(tmp_path) in message and f"process {holder.pid} on this machine" in message
        assert "wait" in message and "--out" in message and LOCK_FILE in message
        assert isinstance(refused.value, OutputError)  # one error family: exit code 2
    finally:
        holder.communicate("")
    # In this process too: a second lock of a folder already locked here is refused.
    with FolderLock(tmp_path), pytest.raises(FolderInUse, match=f"process {os.getpid()} "):
        FolderLock(tmp_path).acquire()


def test_a_lock_left_by_a_process_that_ended_is_taken_over(tmp_path):
    path = write_lock(tmp_path, pid=dead_pid(), host=socket.gethostname())
    with FolderLock(tmp_path) as lock:
        assert json.loads(path.read_text())["token"] == lock.token
    assert not path.exists()


def test_of_several_processes_finding_a_stale_lock_one_takes_it(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host=socket.gethostname())
    takers = [locker(tmp_path) for _ in range(4)]
    try:
        answers = sorted(taker.stdout.readline().strip() for taker in takers)
    finally:
        for taker in takers:
            taker.communicate("")
    assert answers == ["in use", "in use", "in use", "took it"]
    assert not (tmp_path / LOCK_FILE).exists()  # the winner gave it back on leaving


def test_a_lock_of_another_machine_is_not_taken_over(tmp_path):
    path = write_lock(tmp_path, pid=dead_pid(), host="elsewhere.example")
    before = path.read_bytes()
    with pytest.raises(FolderInUse, match="on elsewhere.example .*started 2024-01-02T03:04:05"):
        FolderLock(tmp_path).acquire()
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", ["", "{not json", '{"pid": 12}', "[1, 2]"])
def test_a_lock_file_that_cannot_be_read_counts_as_in_use(tmp_path, content):
    path = tmp_path / LOCK_FILE
    path.write_text(content)
    with pytest.raises(FolderInUse, match="cannot be read.*if no run is using this folder, delete"):
        FolderLock(tmp_path).acquire()
    assert path.read_text() == content


def test_giving_back_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    lock = FolderLock(tmp_path).acquire()
    path = write_lock(tmp_path, pid=os.getpid(), host=socket.gethostname(), token="another")
    lock.release()
    assert json.loads(path.read_text())["token"] == "another"


def test_a_lock_cannot_be_sent_to_another_process(tmp_path):
    import pickle

    with FolderLock(tmp_path) as lock, pytest.raises(TypeError, match="belongs to the process"):
        pickle.dumps(lock)
