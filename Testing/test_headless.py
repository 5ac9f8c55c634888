"""The headless scene has Slicer's module logics, and shipped files load as real nodes."""


def test_scene_has_the_module_logics(scene_app):
    scene, app = scene_app
    for name in ("Colors", "Volumes", "Segmentations", "Tables", "Data"):
        assert app.GetModuleLogic(name) is not None, f"{name} logic is not registered"
    assert scene.GetFirstNodeByClass("vtkMRMLColorTableNode") is not None, (
        "default colour tables are missing"
    )


def test_ctchest4_loads_as_real_nodes(ctchest):
    scene, volume, segmentation, ids = ctchest
    assert volume.IsA("vtkMRMLScalarVolumeNode")
    assert volume.GetImageData().GetDimensions() == (128, 128, 34)
    assert segmentation.IsA("vtkMRMLSegmentationNode")
    assert {"right lung", "left lung"} <= set(ids)
