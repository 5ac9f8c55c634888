"""The two thresholds of the modality content test, chosen on the selection halves, checked on the
held-out ones.

    .venv/bin/python Utilities/modality_thresholds.py [--data ../shared/data]

Radiographs: the cxr_dev cases of each half (Utilities/dev_split.json). CT slices: every axial
slice of ct_dev in each half's blocks, each as stored (HU) and as 8-bit exports would have it
(lung window, mediastinal window, min-max), since 8-bit CT slices are common in public sets.
For each slice, :func:`modality.body_measures` gives (border touch, body extent).

The body extent limit is not chosen from data: it is set half-way between an ellipse in its
box (pi/4, a body cross-section) and a full frame (1, a radiograph fills its own frame, padded or
not). The border touch limit is put in the middle of the gap, on the selection half, between the
largest CT value and the smallest value among radiographs whose extent does not tell them apart.
Writes Utilities/modality_thresholds.json: the limit and the errors on each half.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))

from SAMZeroShotLib import modality  # noqa: E402
from SAMZeroShotLib.volumes import read_volume  # noqa: E402

OUT = ROOT / "Utilities" / "modality_thresholds.json"
# 8-bit renderings of HU slices: (lowest, highest) HU mapped to 0..255.
EXPORTS = {
    "hu": None,
    "lung window 8-bit": (-1400.0, 100.0),
    "mediastinal window 8-bit": (-160.0, 240.0),
    "min-max 8-bit": "min-max",
}


def rendered(plane: np.ndarray, export):
    if export is None:
        return plane
    low, high = (float(plane.min()), float(plane.max())) if export == "min-max" else export
    return (np.clip((plane - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def measures(data: Path, split: dict) -> dict:
    """``{half: {"ct": [(touch, extent, label)], "xray": [...]}}``."""
    result = {}
    volume_path = sorted((data / "ct_dev" / "images").iterdir())[0]
    volume = read_volume(volume_path).voxels
    for half in ("selection", "heldout"):
        xray = []
        for case in split["cxr_dev"][half]:
            image = read_volume(data / "cxr_dev" / "images" / f"{case}.jpg").voxels
            xray.append(modality.body_measures(image[0]) + (case,))
        ct = []
        for first, last in split["ct_dev"][half]:
            for s in range(first, min(last + 1, len(volume))):
                for name, export in EXPORTS.items():
                    ct.append(
                        modality.body_measures(rendered(volume[s], export)) + (f"slice {s} {name}",)
                    )
        result[half] = {"ct": ct, "xray": xray}
    return result


def choose_touch(ct, xray, extent: float) -> float:
    """The border touch limit in the middle of the gap (see the module docstring)."""
    ct_touch = max(t for t, _, _ in ct)
    return (ct_touch + min(t for t, e, _ in xray if e <= extent)) / 2.0


def errors(items, touch, extent, want_ct: bool):
    wrong = [label for t, e, label in items if (t <= touch and e <= extent) != want_ct]
    return {"n": len(items), "wrong": len(wrong), "examples": wrong[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    split = json.loads((ROOT / "Utilities" / "dev_split.json").read_text())
    found = measures(args.data, split)
    extent = modality.MAX_BODY_EXTENT
    touch = choose_touch(found["selection"]["ct"], found["selection"]["xray"], extent)
    report = {
        "max_border_touch": round(touch, 3),
        "chosen_on": "selection",
        "max_body_extent": extent,
    }
    for half, items in found.items():
        report[half] = {
            "ct": errors(items["ct"], touch, extent, True),
            "xray": errors(items["xray"], touch, extent, False),
            "ct_range": [
                round(min(t for t, _, _ in items["ct"]), 3),
                round(max(t for t, _, _ in items["ct"]), 3),
                round(min(e for _, e, _ in items["ct"]), 3),
                round(max(e for _, e, _ in items["ct"]), 3),
            ],
            "xray_range": [
                round(min(t for t, _, _ in items["xray"]), 3),
                round(max(t for t, _, _ in items["xray"]), 3),
                round(min(e for _, e, _ in items["xray"]), 3),
                round(max(e for _, e, _ in items["xray"]), 3),
            ],
        }
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
