"""The model's parts in a CPU runtime: ONNX Runtime or OpenVINO, one part each.

Every part is called with its inputs and ``threads``, the calling lane's thread count (None: the
part's own), and opened once per thread count it is called with (:class:`_LanedPart`).
:class:`PartCall` calls a part like the PyTorch parts: tensors in, tensors out.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

#: OpenVINO's names of the precisions it runs.
OPENVINO_TYPES = {"fp32": "f32", "bf16": "bf16"}


class _LanedPart:
    """One model part in a CPU runtime, opened once per thread count: the engine's own
    (``threads``), and the smaller one of its slice lanes (lanes run concurrently, each with its
    own copy). Calls name the thread count they run with (None: the part's own)."""

    def __init__(self, inputs: Sequence[str], threads: int):
        self.inputs = tuple(inputs)
        self.threads = threads
        self._opened: dict[int, object] = {}
        self._lock = threading.Lock()

    def _open(self, threads: int):
        raise NotImplementedError

    def opened(self, threads: int | None = None):
        threads = threads or self.threads
        item = self._opened.get(threads)
        if item is None:
            with self._lock:
                item = self._opened.get(threads)
                if item is None:
                    item = self._opened[threads] = self._open(threads)
        return item

    def run(self, *inputs: torch.Tensor, threads: int | None = None) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class OnnxRuntimePart(_LanedPart):
    """A model part in ONNX Runtime, from its ONNX file's bytes (CPU, float32). ONNX Runtime fuses
    convolutions with their batch norms and GELUs into the matrix products, which makes it faster
    than PyTorch eager on a CPU (see the documentation on speed)."""

    name = "onnxruntime"

    def __init__(self, payload: bytes, inputs: Sequence[str], threads: int):
        super().__init__(inputs, threads)
        self.payload = payload
        self.opened()

    def _open(self, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its notes on unused initialisers are noise
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        return onnxruntime.InferenceSession(
            self.payload, options, providers=["CPUExecutionProvider"]
        )

    def run(self, *inputs, threads=None):
        feed = {name: value.numpy() for name, value in zip(self.inputs, inputs, strict=True)}
        return tuple(torch.from_numpy(output) for output in self.opened(threads).run(None, feed))


class OpenVinoPart(_LanedPart):
    """A model part compiled by OpenVINO for this CPU (the compiled blob, imported once per
    thread count); each calling thread gets its own infer request."""

    name = "openvino"

    def __init__(self, blob: bytes, inputs: Sequence[str], threads: int, precision: str):
        super().__init__(inputs, threads)
        self.blob = blob
        self.precision = precision
        self._requests = threading.local()
        self.opened()

    def _open(self, threads: int):
        import openvino

        # The precision must be given again: a float32 blob imported without it on a CPU whose
        # default is bf16 computes NaNs (OpenVINO 2026.4). The imported model may point into
        # the blob's buffer, which therefore lives as long as this part.
        # OpenVINO runs one request per stream: lanes sharing a one-stream model wait for each
        # other (measured in the documentation on speed). So a lane of ``threads`` gets a model
        # with one stream per lane, sharing the part's threads.
        streams = max(1, self.threads // threads)
        config = {
            "INFERENCE_NUM_THREADS": max(threads, self.threads) if streams > 1 else threads,
            "NUM_STREAMS": streams,
            "INFERENCE_PRECISION_HINT": OPENVINO_TYPES[self.precision],
        }
        return openvino.Core().import_model(self.blob, "CPU", config)

    def run(self, *inputs, threads=None):
        compiled = self.opened(threads)
        requests = self._requests.__dict__.setdefault("by_model", {})
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        outputs = request.infer([value.numpy() for value in inputs], share_inputs=True)
        return tuple(
            torch.from_numpy(np.array(outputs[port], copy=True)) for port in compiled.outputs
        )


class PartCall:
    """A runtime part called like the PyTorch parts: tensors in, tensors out."""

    def __init__(self, part: _LanedPart, kind: str, precision: str):
        self.part = part
        self.name = part.name
        self.kind = kind
        self.precision = precision

    def __call__(self, *inputs: torch.Tensor, threads: int | None = None):
        if self.kind == "decoder":
            return self.part.run(*inputs, threads=threads)
        # The encoder's batch size is fixed to 1 (see encoder_spec).
        batch = inputs[0]
        return torch.cat(
            [self.part.run(batch[i : i + 1], threads=threads)[0] for i in range(len(batch))]
        )
