"""The model's own two parts in PyTorch, called like every runtime part.

:class:`TorchEncoder` runs the image encoder (optionally under autocast); :class:`TorchDecoder`
runs the prompt encoder and mask decoder through :class:`PromptDecoder`, the form the decoder is
exported in, so that PyTorch and the exported runtimes compute one function.
"""

from __future__ import annotations

import torch
from segment_anything.utils.onnx import SamOnnxModel

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEncoder:
    """The model's own image encoder, with optional autocast.

    Like every runtime part, it is called with the part's inputs and ``threads``, the calling
    lane's thread count (None: the part's own); PyTorch's threads are shared by the whole
    process, so its parts ignore it.
    """

    name = "torch"

    def __init__(self, model, precision: str):
        self.encoder = model.image_encoder
        self.device_type = str(model.device).split(":")[0]
        self.dtype = _AUTOCAST_DTYPES.get(precision)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        if self.dtype is None:
            return self.encoder(batch)
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.encoder(batch).float()


class PromptDecoder(SamOnnxModel):
    """Prompt encoder and mask decoder as one traceable module (segment_anything's ONNX model).

    Box corners are passed as points labelled 2 and 3, and a prompt without a box gets a padding
    point labelled -1, which is exactly what ``SamPredictor`` feeds the decoder. Returns the
    low-resolution logits of all mask tokens and their predicted IoU; choosing a token and
    resizing to the slice happen outside, so all runtimes share that code.
    """

    def __init__(self, model):
        super().__init__(model, return_single_mask=False)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        return self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )


class TorchDecoder:
    name = "torch"

    def __init__(self, model):
        self.module = PromptDecoder(model).eval()

    @torch.inference_mode()
    def __call__(self, features, coords, labels, masks, has_mask, threads: int | None = None):
        return self.module(features, coords, labels, masks, has_mask)
