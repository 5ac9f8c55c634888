"""The engine on a real CT slice: the masks of SamPredictor, and the embedding cache."""

import numpy as np
import pytest

from SAMZeroShotLib import imaging, pipeline, prompts


def test_engine_masks_match_segment_anythings_predictor(chest, litemedsam):
    """Same masks as SamPredictor, for box-only, points-only and points+box prompts, in float32
    (where the CPU runs the encoder in bf16 by default, its masks differ slightly: measured 0.9974
    of pixels agreeing; the accuracy guard judges those)."""
    from segment_anything import SamPredictor

    from SAMZeroShotLib.engine import SamEngine

    engine = SamEngine(litemedsam, precision="fp32")

    voxels, geometry, masks = chest
    image = imaging.to_rgb8(geometry.view(voxels)[20], imaging.WINDOW_PRESETS["ct-lung"])
    slice_masks = {key: geometry.view(mask)[20] for key, mask in masks.items()}
    [paper] = prompts.paper_prompts(slice_masks)
    box_only = prompts.Prompt(segments=("right",), box=paper.box)
    points_only = prompts.Prompt(
        segments=("right",), points=paper.points, labels=paper.labels, multimask=True
    )
    predictor = SamPredictor(litemedsam)
    predictor.set_image(image)
    [embedding] = engine.encode([image])
    got = engine.decode(embedding, [paper, box_only, points_only])
    for prompt, prediction in zip([paper, box_only, points_only], got, strict=True):
        expected, scores, _ = predictor.predict(
            point_coords=prompt.points,
            point_labels=prompt.labels,
            box=prompt.box,
            multimask_output=prompt.multimask,
        )
        best = int(np.argmax(scores)) if prompt.multimask else 0
        agreement = (expected[best] == prediction.mask).mean()
        assert agreement > 0.9999, f"{agreement:.6f} of pixels agree"
        assert prediction.score == pytest.approx(float(scores[best]), abs=1e-3)


def test_the_cache_skips_the_encoder_on_a_rerun_with_other_prompts(engine, chest_volume):
    volume, geometry, masks = chest_volume
    kept = pipeline.keep_slices(masks, geometry, [18, 19])
    pipeline.segment_volume(volume, geometry, kept, engine, strategy="box")
    before = engine.encoded_slices
    pipeline.segment_volume(volume, geometry, kept, engine, strategy="paper")
    assert engine.encoded_slices == before
