"""The runtimes' files kept on disk: where they go, how they are named, and their format.

Each file starts with one line holding its key and the SHA-256 of the rest; a file whose key or
digest does not match is rebuilt, never used. Files are written under a temporary name and
renamed (:func:`files.write_bytes_atomically`), so processes preparing at once never see (or
leave) a half-written file.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path

import torch

from . import files

_MAGIC = b"SAMZeroShot cache v1 "


def write_cache_file(path: Path, key: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` under a header with ``key`` and the payload's SHA-256,
    atomically (a complete file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b" " + key.encode() + b"\n"
    files.write_bytes_atomically(path, header + payload)


def read_cache_file(path: Path, key: str) -> bytes | None:
    """The payload of a cache file, or None when it is missing, made for another key (stale) or
    not what was written (corrupt or cut short)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header, newline, payload = data.partition(b"\n")
    if not newline or not header.startswith(_MAGIC):
        return None
    digest, _, stored_key = header[len(_MAGIC) :].decode(errors="replace").partition(" ")
    if stored_key != key or hashlib.sha256(payload).hexdigest() != digest:
        return None
    return payload


def cached(path: Path, key: str, build: Callable[[], bytes]) -> tuple[bytes, bool]:
    """``(payload, built)``: the cache file's payload when intact, else ``build()``'s, written."""
    payload = read_cache_file(path, key)
    if payload is not None:
        return payload, False
    payload = build()
    write_cache_file(path, key, payload)
    return payload, True


def runtime_version(backend: str) -> str:
    """A runtime's version, e.g. "2026.4.1" (without build suffixes)."""
    module = importlib.import_module(backend)
    return module.__version__.split("+")[0].split("-")[0]


def runtimes_dir() -> Path:
    """The folder of the runtimes' files, in the model cache."""
    from . import models

    return models.cache_dir() / "runtimes"


def model_stem(model) -> str:
    """Names the checkpoint: architecture and the start of its SHA-256."""
    from . import models

    spec = model.spec
    digest = (
        spec.sha256
        if spec.sha256 and model.checkpoint_verified
        else models.file_sha256(model.checkpoint)
    )
    return f"{spec.architecture}-{digest[:16]}"


def torch_version() -> str:
    """PyTorch's version, without the build suffix."""
    return torch.__version__.split("+")[0]
