"""make demo: the built-in model on a real chest CT (slicerio's CTChest4) with its lung segments.

Writes into --out: the segmentation (.seg.nrrd), the metrics table (.tsv), an overlay of a few
slices and a Dice-per-slice plot (PNG), then prints the mean Dice and where everything is.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SAMZeroShot"))

from SAMZeroShotLib import headless, imaging, metrics, mrml_io, segment_nodes  # noqa: E402


def overlay_png(path, voxels, geometry, predicted, reference, colors, slices):
    """Slices side by side: reference outline-free fill on the left, prediction on the right."""
    from PIL import Image

    tiles = []
    window = imaging.resolve_window("auto", voxels)
    for s in slices:
        gray = imaging.to_rgb8(geometry.view(voxels)[s], window).astype(np.float32)
        panels = []
        for masks in (reference, predicted):
            panel = gray.copy()
            for key, mask in masks.items():
                plane = geometry.view(mask)[s]
                panel[plane] = 0.55 * panel[plane] + 0.45 * 255 * np.array(colors[key])
            panels.append(panel)
        tiles.append(np.concatenate(panels, axis=1))
    image = Image.fromarray(np.concatenate(tiles, axis=0).astype(np.uint8))
    image = image.resize((image.width * 2, image.height * 2), Image.NEAREST)
    image.save(path)


def dice_plot_png(path, slices, columns, colors, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    for name, values in columns.items():
        axes.plot(
            slices,
            values,
            marker="o",
            markersize=3,
            label=name,
            color=colors.get(name, (0.2, 0.2, 0.2)),
        )
    axes.set_xlabel("slice")
    axes.set_ylabel("Dice")
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower center")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None):
    import slicerio

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-output")
    parser.add_argument("--strategy", default="auto")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(os.path.dirname(slicerio.__file__)) / "data"

    scene, app = headless.new_scene()
    volume = headless.load_volume(app, data / "CTChest4.nrrd")
    prompts = headless.load_segmentation(app, data / "Segmentation.seg.nrrd")
    lungs = mrml_io.resolve_segment_ids(prompts, ["right lung", "left lung"])
    started = time.perf_counter()
    segmentation, table = segment_nodes.process(
        volume,
        prompts,
        lungs,
        parameters=segment_nodes.Parameters(strategy=args.strategy),
        log=lambda line: print(line),
    )
    seconds = time.perf_counter() - started

    seg_path, tsv_path = out / "CTChest4-SAM.seg.nrrd", out / "CTChest4-SAM-metrics.tsv"
    overlay_path, plot_path = out / "CTChest4-SAM-overlay.png", out / "CTChest4-SAM-dice.png"
    headless.write_segmentation(segmentation, seg_path)
    headless.write_table_tsv(table, tsv_path)

    voxels = mrml_io.volume_array(volume)
    geometry = imaging.slice_geometry(mrml_io.ijk_to_ras(volume), voxels.shape)
    predicted = mrml_io.segment_masks(segmentation, lungs, volume)
    reference = mrml_io.segment_masks(prompts, lungs, volume)
    colors = {i: prompts.GetSegmentation().GetSegment(i).GetColor() for i in lungs}
    with_lung = np.flatnonzero(
        geometry.view(np.logical_or.reduce(list(reference.values()))).any(axis=(1, 2))
    )
    shown = with_lung[np.linspace(0, len(with_lung) - 1, 4).round().astype(int)[1:3]]
    overlay_png(overlay_path, voxels, geometry, predicted, reference, colors, shown)
    records = [
        {
            name: table.GetTable().GetValue(r, c).ToString()
            for c, name in enumerate(segment_nodes.TABLE_COLUMNS)
        }
        for r in range(table.GetNumberOfRows())
    ]
    for record in records:
        for key in ("slice", "scored", "dice"):
            record[key] = float(record[key])
    slices, columns = segment_nodes.dice_series(
        records, [prompts.GetSegmentation().GetSegment(i).GetName() for i in lungs]
    )
    names = {prompts.GetSegmentation().GetSegment(i).GetName(): colors[i] for i in lungs}
    dice_plot_png(
        plot_path, slices, columns, names, "CTChest4: Dice per slice (LiteMedSAM, oracle prompts)"
    )

    mean = next(r for r in records if r["scope"] == "slice mean" and r["segment"] == metrics.UNION)
    print()
    print(
        f"Mean Dice over {int(mean['scored'])} scored slices: {mean['dice']:.4f} "
        f"(both lungs; {table.GetAttribute('SAMZeroShot.Strategy')} prompts; {seconds:.0f} s)"
    )
    for path in (seg_path, tsv_path, overlay_path, plot_path):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
