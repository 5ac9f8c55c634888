"""Engines owned by their callers: a small factory that builds :class:`~.engine.SamEngine` objects
from :class:`~.parameters.Parameters` and keeps the last few it built.

Whoever runs the model owns a factory: the Slicer module's logic, the Segment Editor effect, one
``samzeroshot`` command, each Dask worker process. Nothing is kept at module level, so two
factories never share an engine, and callers that should share one (a test session, say) share
their factory.

An engine is kept under the settings that make it (:meth:`Parameters.engine_key`, the device
resolved) and PyTorch's thread count when it was made (its runtime sessions keep that count),
with an embedding cache of its own. The factory builds engines with the accuracy guard as their
precision check (:data:`accuracy_guard.GUARD`), so an automatically chosen bf16 is kept only
where it is as accurate as float32. Creating a factory imports nothing heavy (no torch): that
happens when it builds its first engine.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from . import accuracy_guard
from .parameters import Parameters


class EngineFactory:
    """Builds engines and keeps at most ``keep`` of them, the least recently used dropped first.

    ``check``: the precision check handed to the runtime layer (see :func:`runtimes.prepare`);
    None lets no automatically chosen reduced precision run.
    """

    def __init__(self, keep: int = 1, check=accuracy_guard.GUARD):
        if keep < 1:
            raise ValueError(f"An engine factory keeps at least one engine, not {keep}.")
        self.keep = keep
        self.check = check
        self._kept: OrderedDict[tuple, tuple] = OrderedDict()  # key: (engine, embedding cache)
        self._lock = threading.Lock()

    @staticmethod
    def key(parameters: Parameters) -> tuple:
        """What an engine for ``parameters`` is kept under: equal keys share one engine."""
        import torch

        from . import models

        device = models.resolve_device(parameters.device)
        return parameters.engine_key(device=device), torch.get_num_threads()

    def build(
        self,
        parameters: Parameters,
        progress: Callable[[float, str], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        """A new engine for ``parameters``, kept by nobody: the caller owns it.

        ``progress`` and ``cancel()`` follow (and can stop) a download of the weights; ``log``
        receives the line saying which runtime and precision were chosen.
        """
        from . import models
        from .engine import SamEngine

        device = models.resolve_device(parameters.device)
        model = models.load_model(
            parameters.model, parameters.checkpoint, device, progress=progress, cancel=cancel
        )
        return SamEngine(
            model,
            precision=parameters.precision,
            backend=parameters.backend,
            log=log,
            check=self.check,
        )

    def get(
        self,
        parameters: Parameters,
        progress: Callable[[float, str], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        """The kept engine for ``parameters``, built (:meth:`build`) when there is none.

        When ``keep`` engines are kept already, the least recently used is dropped before the
        new one is loaded (SAM ViT-H alone holds 2.5 GB). The engine's embedding cache is its
        ``cache`` while ``parameters.embedding_cache`` is on; a run with it off neither reads nor
        fills it, and the embeddings stay for later runs.
        """
        from .engine import EmbeddingCache

        key = self.key(parameters)
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                while len(self._kept) >= self.keep:
                    self._kept.popitem(last=False)
                engine = self.build(parameters, progress, cancel, log)
                kept = self._kept[key] = (engine, EmbeddingCache())
            self._kept.move_to_end(key)
            engine, cache = kept
            engine.cache = cache if parameters.embedding_cache else None
        return engine

    def release(self, parameters: Parameters | None = None) -> None:
        """Drop the engine kept for ``parameters`` (None: every engine) with its embedding cache;
        the next :meth:`get` builds it again."""
        with self._lock:
            if parameters is None:
                self._kept.clear()
            else:
                self._kept.pop(self.key(parameters), None)

    def __len__(self) -> int:
        """How many engines are kept."""
        return len(self._kept)
