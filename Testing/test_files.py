"""Output files written safely: an append cut short leaves the file as it was."""

import os
from pathlib import Path

import pytest

from SAMZeroShotLib.files import append_synced, write_bytes_atomically


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
