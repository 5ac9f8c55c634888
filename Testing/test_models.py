"""Model registry: the built-in weights, the download path (loopback server) and safe loading.

No internet here, so the official SAM download is exercised against a local HTTP server that
serves a real checkpoint file (the LiteMedSAM one) under the same code path.
"""

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest
import torch

from SAMZeroShotLib import errors, models
from SAMZeroShotLib.engine import SamEngine
from SAMZeroShotLib.prompts import Prompt


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Serves a folder on 127.0.0.1; yields (base URL, folder)."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.handle_error = lambda request, address: None  # a cancelled download hangs up early
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()


def test_builtin_checkpoint_is_the_published_file():
    path = models.litemedsam_checkpoint()
    spec = models.MODELS["litemedsam"]
    assert path.stat().st_size == spec.size
    models.verify_file(path, spec.sha256, spec.size)  # raises if not


def test_builtin_model_loads_strictly(litemedsam):
    assert litemedsam.spec.name == "litemedsam"
    assert litemedsam.image_encoder.img_size == 256
    assert sum(p.numel() for p in litemedsam.parameters()) == pytest.approx(9.8e6, rel=0.05)


def test_download_verifies_and_loads(server, tmp_path, monkeypatch):
    url, folder = server
    shutil.copy(models.litemedsam_checkpoint(), folder / "weights.pth")
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    builtin = models.MODELS["litemedsam"]
    spec = models.ModelSpec(
        "served",
        "litemedsam",
        256,
        "test",
        url=url + "weights.pth",
        filename="weights.pth",
        sha256=builtin.sha256,
        size=builtin.size,
    )
    seen = []
    path = models.checkpoint_path(spec, progress=lambda fraction, message: seen.append(fraction))
    assert path == tmp_path / "cache" / "weights.pth"
    assert seen and seen[-1] == 1.0
    assert [p.name for p in path.parent.iterdir()] == ["weights.pth"], "a partial file was left"
    model = models.build(spec.architecture)
    model.load_state_dict(models.load_state(path), strict=True)
    # A second call finds the cached, verified file and downloads nothing.
    (folder / "weights.pth").unlink()
    assert models.checkpoint_path(spec) == path


def test_a_download_with_the_wrong_digest_is_refused_and_removed(server, tmp_path):
    url, folder = server
    data = bytearray(models.litemedsam_checkpoint().read_bytes())
    data[1000] ^= 0xFF  # one flipped byte: same size, different digest
    (folder / "corrupt.pth").write_bytes(bytes(data))
    destination = tmp_path / "corrupt.pth"
    spec = models.MODELS["litemedsam"]
    with pytest.raises(errors.CheckpointError, match="SHA-256"):
        models.download(url + "corrupt.pth", destination, spec.sha256, spec.size)
    assert not destination.exists()
    assert not any(tmp_path.iterdir()), "a partial file was left behind"
    with pytest.raises(errors.CheckpointError, match="expected"):
        models.download(url + "corrupt.pth", destination, spec.sha256, spec.size + 1)
    assert not destination.exists()
    # A cancelled download leaves nothing either, and an earlier file as it was.
    destination.write_bytes(b"earlier")
    with pytest.raises(errors.Cancelled):
        models.download(url + "corrupt.pth", destination, spec.sha256, cancel=lambda: True)
    assert [p.name for p in tmp_path.iterdir()] == ["corrupt.pth"]
    assert destination.read_bytes() == b"earlier"


def test_a_corrupt_cached_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(errors.CheckpointError, match="delete it and download again"):
        models.checkpoint_path(models.MODELS["sam_vit_b"])


class Payload:
    """Anything but tensors: weights_only loading must refuse to unpickle it."""


def test_checkpoints_are_loaded_without_unpickling_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(
        errors.CheckpointError, match="not a SAM checkpoint, or the file is damaged"
    ):
        models.load_state(path)


def test_unknown_model_and_device_are_named():
    with pytest.raises(ValueError, match="Unknown model 'sam_vit_x'"):
        models.spec_for("sam_vit_x")
    with pytest.raises(ValueError, match="Unknown device"):
        models.resolve_device("tpu")
    assert models.resolve_device("cpu") == "cpu"


def test_random_vit_b_runs_once_and_gives_masks_of_the_image_size(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "random_vit_b.pth"
    torch.save(models.build("vit_b").state_dict(), path)
    model = models.load_model("vit_b", checkpoint=path, device="cpu")
    assert model.image_encoder.img_size == 1024
    engine = SamEngine(model, precision="fp32")
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    [embedding] = engine.encode([image])
    box = Prompt(segments=("a",), box=[5, 5, 40, 30])
    point = Prompt(segments=("b",), points=[[20, 20]], labels=[1], multimask=True)
    predictions = engine.decode(embedding, [box, point])
    assert [p.mask.shape for p in predictions] == [(48, 64), (48, 64)]
    assert predictions[0].low_res_logits.shape == (1, 256, 256)
