"""Times of the Segment Editor effect's data side on a CT: first box, a click, Fill the volume.

    .venv/bin/python Utilities/effect_timing.py [--data ../shared/data] [--case lidc0001]

Runs :class:`SAMZeroShotLib.editor_session.EditorSession` (what the effect calls, without the
editor's own VTK work) with the default engine on ``ct_dev``: a box around the right lung on
the slice where it is largest (a first interaction on that slice: encoder and decoder), an
include click at the deepest point of the largest miss (decoder only), and "Fill the volume"
from that slice (the module's propagation with the default strategy). Prints a JSON line
after the click and another at the end.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))

from SAMZeroShotLib.cases import read_labels  # noqa: E402
from SAMZeroShotLib.corrections import next_click  # noqa: E402
from SAMZeroShotLib.editor_session import EditorSession, voxel_at  # noqa: E402
from SAMZeroShotLib.engines import EngineFactory  # noqa: E402
from SAMZeroShotLib.parameters import Parameters  # noqa: E402
from SAMZeroShotLib.volumes import read_volume  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--case", default="lidc0001")
    args = parser.parse_args()
    folder = args.data / "ct_dev"
    image = read_volume(folder / "images" / f"{args.case}.nii.gz")
    volume, ijk_to_ras = image.voxels, image.ijk_to_ras
    labels = read_labels(folder / "masks" / f"{args.case}.nii.gz", volume.shape)
    started = time.perf_counter()
    engine = EngineFactory().get(Parameters())
    times = {"load_model_s": time.perf_counter() - started}
    session = EditorSession(engine, volume, ijk_to_ras)
    geometry = session.geometry(0)
    lung = geometry.view(labels == 1)
    s = int(np.argmax(lung.sum(axis=(1, 2))))
    rows, cols = np.nonzero(lung[s])
    corners = [
        voxel_at(geometry, volume.shape, s, int(rows.min()), int(cols.min())),
        voxel_at(geometry, volume.shape, s, int(rows.max()), int(cols.max())),
    ]
    started = time.perf_counter()
    _, mask = session.box("lung", 0, corners)
    times["first_box_s"] = time.perf_counter() - started
    click = next_click(lung[s], geometry.view(mask)[s])
    ijk = voxel_at(geometry, volume.shape, s, click.row, click.col)
    started = time.perf_counter()
    _, mask = session.click("lung", 0, ijk, click.include, mask)
    times["click_s"] = time.perf_counter() - started
    print(json.dumps(times), flush=True)  # the interactive times, before the long part
    started = time.perf_counter()
    filled = session.fill(mask, 0)
    times["fill_volume_s"] = time.perf_counter() - started
    times["fill_slices"] = int(geometry.view(filled).any(axis=(1, 2)).sum())
    times["slice_size"] = list(geometry.view(volume).shape[1:])
    times["threads"] = engine.threads
    print(json.dumps(times))


if __name__ == "__main__":
    main()
