"""Output files that never touch an input and are never left half-written.

* :func:`check_apart` refuses an output that is, after links are followed, the same file as an
  input (a typing slip must not overwrite the user's CT or prompt segmentation).
* :func:`check_output_file` and :func:`writable_folder` find an output that cannot be written
  before any time is spent on the model.
* :func:`replaced_atomically`, :func:`write_text_atomically` and :func:`write_bytes_atomically`
  write a complete file beside its destination and rename it into place, so an existing output is
  either the old complete file or the new complete file, never a mixture, whatever stops the run.
* :func:`append_synced` appends and forces the lines to disk, or leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import OutputError

PathLike = str | os.PathLike


def real_path(path: PathLike) -> Path:
    """``path`` with every symbolic link resolved (also when the file does not exist yet)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def same_file(first: PathLike, second: PathLike) -> bool:
    """True when both name one file: the same path once links are resolved, or hard links."""
    a, b = real_path(first), real_path(second)
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: different files
        return False


def check_apart(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike]) -> None:
    """Raise :class:`OutputError` when an output is an input, or two outputs are one file.

    ``outputs`` and ``inputs`` map what each file is (for the message) to its path.
    """
    for out_name, out_path in outputs.items():
        for in_name, in_path in inputs.items():
            if same_file(out_path, in_path):
                raise OutputError(
                    f"{out_path}: the {out_name} would overwrite the {in_name} {in_path}: "
                    "choose another output name."
                )
    named = list(outputs.items())
    for index, (name, path) in enumerate(named):
        for other_name, other_path in named[index + 1 :]:
            if same_file(path, other_path):
                raise OutputError(
                    f"{path}: the {name} and the {other_name} {other_path} are the same file: "
                    "give them different names."
                )


def writable_folder(folder: PathLike) -> Path:
    """Create ``folder`` (with its parents) and check a file can be made in it; return it.

    A real file is created and removed: permission bits say nothing for root or a read-only mount.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder: choose a folder for the outputs.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = _temporary_beside(folder / "write-test")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(
            f"{folder}: cannot write in this folder ({error.strerror or error}): "
            "choose another output folder."
        ) from None
    return folder


def check_output_file(path: PathLike) -> Path:
    """Check that ``path`` can be (re)placed: not a folder, not read-only, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder: give a file name for this output.")
    if path.exists() and not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise OutputError(
            f"{path}: the existing file is read-only: make it writable to replace it, "
            "or choose another output name."
        )
    writable_folder(real_path(path).parent)
    return path


def _temporary_beside(path: Path):
    """A new empty file next to ``path`` whose name ends like it (writers pick the format by
    name)."""
    name = f".{secrets.token_hex(4)}.partial-{path.name}"
    target = path.parent / name
    return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), target


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replaced_atomically(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; rename it into place on success.

    The destination is the file a link points to, so a linked output stays linked. On any error
    (or interruption) the temporary file is removed and ``path`` is left as it was.
    """
    destination = real_path(path)
    descriptor, temporary = _temporary_beside(destination)
    os.close(descriptor)
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        if destination.exists():  # keep the permissions the user gave the file
            os.chmod(temporary, stat.S_IMODE(destination.stat().st_mode))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(destination.parent)


def write_text_atomically(path: PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) by an atomic rename of a complete, synced file."""
    with replaced_atomically(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes_atomically(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` by an atomic rename of a complete, synced file."""
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(data)


def append_synced(path: PathLike, text: str) -> None:
    """Append ``text`` to ``path`` and force it to disk; on failure the file is cut back as it
    was."""
    data = text.encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(descriptor, 0, os.SEEK_END)
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
            os.fsync(descriptor)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, start)
            raise
    finally:
        os.close(descriptor)
