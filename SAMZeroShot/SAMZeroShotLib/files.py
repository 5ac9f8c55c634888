"""Output files that never touch an input and are never left half-written.

* :func:`check_apart` refuses an output that is, after links are followed, the same file as an
  input (a typing slip must not overwrite the user's CT or prompt segmentation).
* :func:`check_output_file` and :func:`writable_folder` find an output that cannot be written
  before any time is spent on the model.
* :func:`replaced_atomically`, :func:`write_text_atomically` and :func:`write_bytes_atomically`
  write a complete file beside its destination and rename it into place, so an existing output is
  either the old complete file or the new complete file, never a mixture, whatever stops the run.
* :func:`append_synced` appends and forces the lines to disk, or leaves the file as it was.
* :class:`FolderLock` makes one process the only writer of a folder; a second one is refused with
  :class:`~.errors.FolderInUse`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import socket
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import FolderInUse, OutputError

try:
    import fcntl
except ImportError:  # Windows: no flock; the exclusive create alone decides who holds a lock
    fcntl = None

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


#: The file in a folder that says which process writes it.
LOCK_FILE = ".samzeroshot.lock"
_held_tokens: set[str] = set()  # tokens of the locks this process holds now


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (true where that cannot be told: Windows)."""
    if os.name == "nt":  # os.kill there would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def _guarded(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself, so that one process at a time reads,
    takes or gives back its lock file (nothing where folders cannot be locked)."""
    if fcntl is None:
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the flock


class FolderLock:
    """One writer for ``folder``: a context manager, or :meth:`acquire` then :meth:`release`.

    Taking it creates ``folder/.samzeroshot.lock`` (exclusively) holding JSON ``{"pid", "host",
    "started" (ISO 8601, UTC), "token"}``. A lock file already there is:

    * stale when it was written on this machine by a process that no longer runs (or by this
      process, for a lock it no longer holds: a number the system gave again): it is replaced;
    * in use otherwise (its process runs, or runs on another machine, or the file cannot be read):
      :class:`~.errors.FolderInUse` is raised, whose message names the folder, the process and
      what to do.

    Reading, taking and giving back happen under an exclusive ``flock`` on the folder, so two
    processes that find the same stale lock cannot both take it over. :meth:`release` removes the
    file only when it still holds this lock's token, and only in the process that took it (not in
    a forked child). A lock cannot be pickled: it belongs to the process that took it.
    """

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.token: str | None = None
        self._pid: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process took the lock and has not given it back."""
        return self.token is not None and self._pid == os.getpid()

    def acquire(self) -> FolderLock:
        """Take the lock (see the class); return ``self``. Raises :class:`~.errors.FolderInUse`."""
        if self.held:
            return self
        token = secrets.token_hex(16)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "token": token,
        }
        text = json.dumps(record) + "\n"
        with _guarded(self.folder):
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None:  # (None: deleted by hand since)
                    self._check_stale(holder)
                write_text_atomically(self.path, text)  # the stale lock, replaced whole
            else:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
        self.token, self._pid = token, os.getpid()
        _held_tokens.add(token)
        return self

    def release(self) -> None:
        """Give the lock back: remove the lock file if it still holds this lock's token."""
        if not self.held:
            return
        token, self.token = self.token, None
        _held_tokens.discard(token)
        with contextlib.suppress(OSError), _guarded(self.folder):
            if (self._holder() or {}).get("token") == token:
                self.path.unlink()

    def _holder(self) -> dict | None:
        """The lock file's record: ``None`` when there is none, ``{}`` when it cannot be read."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _check_stale(self, holder: dict) -> None:
        """Return when ``holder`` (the lock file's record) is stale; else raise FolderInUse."""
        pid, host = holder.get("pid"), holder.get("host")
        if not isinstance(pid, int) or not isinstance(host, str) or "token" not in holder:
            raise FolderInUse(
                f"{self.folder}: its lock file {self.path} cannot be read, so another run may be "
                f"writing to this folder: if no run is using this folder, delete {self.path}"
            )
        if host == socket.gethostname():
            ours = pid == os.getpid() and holder["token"] not in _held_tokens
            if ours or not _alive(pid):
                return
            where = "on this machine"
        else:
            where = f"on {host} (this machine cannot tell whether it still runs)"
        raise FolderInUse(
            f"{self.folder}: another run is writing to this folder (process {pid} {where}, "
            f"started {holder.get('started', 'at an unknown time')}): wait for it to finish, "
            f"or give another output folder (--out); if that process is gone, delete {self.path}"
        )

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __reduce__(self):
        raise TypeError(
            f"the lock of {self.folder} belongs to the process that took it: send what is to be "
            "written back to that process instead"
        )
