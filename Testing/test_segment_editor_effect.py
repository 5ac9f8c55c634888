"""The Segment Editor effect "SAM" on Slicer's own effect base class, for each Slicer layer.

The effect class is Slicer's real ``AbstractScriptedSegmentEditorEffect`` subclassed, loaded
from its file as Slicer loads a scripted effect. Stood in for: the C++ adaptor
(``qSlicerSegmentEditorScriptedEffect``), whose data methods here call what the C++ adaptor
calls, slicer-core's real ``vtkSlicerSegmentEditorLogic`` (undo states, editable area, masking,
overwrite rules), and the slice view (a real ``vtkMRMLSliceNode`` in a widget stand-in).
"""

import importlib.util
import sys
import types

import numpy as np
import pytest
import slicer_layer

VERSIONS = ["5.10", "5.12", "main"]
EFFECT_FILE = slicer_layer.ROOT / "SAMZeroShot" / "SegmentEditorSAMLib" / "SegmentEditorEffect.py"
MODULE_FILE = slicer_layer.ROOT / "SAMZeroShot" / "SegmentEditorSAM.py"


class QPoint:
    def __init__(self, x, y):
        self._x, self._y = x, y

    def x(self):
        return self._x

    def y(self):
        return self._y


class QVector3D(QPoint):
    def __init__(self, x, y, z):
        super().__init__(x, y)
        self._z = z

    def z(self):
        return self._z


class Adaptor:
    """Stand-in for ``qSlicerSegmentEditorScriptedEffect``: what the C++ adaptor does, through
    the real ``vtkSlicerSegmentEditorLogic``."""

    def __init__(self, logic, editor_node):
        self.logic, self.editor_node = logic, editor_node
        self.name = self.title = ""
        self.perSegment = self.requireSegments = False
        self.options = []
        self.python_source = None
        self.effect = None

    # registration
    def setPythonSource(self, path):
        self.python_source = path
        self.effect = load_effect_class(path)(self)
        return True

    def self(self):
        return self.effect

    # the options panel
    def addOptionsWidget(self, widget):
        self.options.append(widget)

    # the editor's data
    def parameterSetNode(self):
        return self.editor_node

    def sourceVolumeImageData(self):
        self.logic.UpdateAlignedSourceVolume()
        return self.logic.GetAlignedSourceVolume()

    def defaultModifierLabelmap(self):
        self.logic.ResetModifierLabelmapToDefault()
        return self.logic.GetModifierLabelmap()

    def selectedSegmentLabelmap(self):
        self.logic.UpdateSelectedSegmentLabelmap()
        return self.logic.GetSelectedSegmentLabelmap()

    def saveStateForUndo(self):
        self.logic.SaveStateForUndo()

    def modifySelectedSegmentByLabelmap(self, labelmap, mode, extent=None, bypassMasking=False):
        node = self.editor_node
        arguments = [node.GetSegmentationNode(), node.GetSelectedSegmentID(), labelmap, mode]
        if extent is not None:
            arguments.append(list(extent))
        self.logic.ModifySegmentByLabelmap(*arguments, self.perSegment, bypassMasking)

    def xyToIjk(self, point, viewWidget, image, parentTransformNode=None):
        import slicer

        ijk = [0, 0, 0]
        slicer.vtkSlicerSegmentEditorLogic.XyToIjk(
            [point.x(), point.y()], ijk, viewWidget.mrmlSliceNode(), image
        )
        return QVector3D(*ijk)

    def confirmCurrentSegmentVisible(self):
        return True


class SliceWidget:
    """Stand-in for ``qMRMLSliceWidget``: a real slice node, nothing drawn."""

    def __init__(self, slice_node):
        self.slice_node = slice_node

    def className(self):
        return "qMRMLSliceWidget"

    def mrmlSliceNode(self):
        return self.slice_node


class Interactor:
    """Stand-in for the view's interactor: one event's position and modifier keys."""

    def __init__(self, xy, shift=False):
        self.xy, self.shift = xy, shift

    def GetEventPosition(self):
        return self.xy

    def GetShiftKey(self):
        return self.shift

    def GetControlKey(self):
        return False

    def GetAltKey(self):
        return False


def load_effect_class(path):
    """The class a scripted effect file defines, loaded as Slicer's adaptor loads it."""
    spec = importlib.util.spec_from_file_location("SegmentEditorEffect", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SegmentEditorEffect


def _slicer_effects_package(version):
    """Slicer's ``SegmentEditorEffects`` package with its real abstract effect class only."""
    folder = slicer_layer.layer_root() / version / "SegmentEditorEffects"
    package = types.ModuleType("SegmentEditorEffects")
    package.__path__ = [str(folder)]
    name = "SegmentEditorEffects.AbstractScriptedSegmentEditorEffect"
    spec = importlib.util.spec_from_file_location(
        name, folder / "AbstractScriptedSegmentEditorEffect.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["SegmentEditorEffects"], sys.modules[name] = package, module
    spec.loader.exec_module(module)
    package.AbstractScriptedSegmentEditorEffect = module.AbstractScriptedSegmentEditorEffect
    return module


class Editor:
    """The effect in a segment editor on CTChest4, with an empty segment selected."""

    def __init__(self, activation, slicerio_data):
        import slicer

        from SAMZeroShotLib import headless, mrml_io

        scene, app = activation.scene, activation.application_logic
        self.volume = headless.load_volume(app, slicerio_data / "CTChest4.nrrd")
        reference = headless.load_segmentation(app, slicerio_data / "Segmentation.seg.nrrd")
        [lung_id] = mrml_io.resolve_segment_ids(reference, ["right lung"])
        [self.right_lung] = mrml_io.segment_masks(reference, [lung_id], self.volume).values()
        self.segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        self.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self.segment_id = self.segmentation.GetSegmentation().AddEmptySegment("lung")
        self.other_id = self.segmentation.GetSegmentation().AddEmptySegment("area")
        self.editor_node = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetSegmentEditorNode(self.editor_node)
        self.logic.SetSegmentationNode(self.segmentation)
        self.logic.SetSourceVolumeNode(self.volume)
        self.editor_node.SetSelectedSegmentID(self.segment_id)
        self.adaptor = Adaptor(self.logic, self.editor_node)
        self.effect = self.adaptor.setPythonSource(str(EFFECT_FILE)) and self.adaptor.self()
        self.effect.setupOptionsFrame()
        self.effect.activate()
        self.slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        self.slice_node.SetLayoutName("Red")
        self.slice_node.SetDimensions(256, 256, 1)
        self.slice_node.SetFieldOfView(400.0, 400.0, 1.0)
        self.slice_node.SetOrientation("Axial")
        self.view = SliceWidget(self.slice_node)

    # the volume's voxels and the view's pixels
    def ras(self, ijk):
        from SAMZeroShotLib import mrml_io

        return (mrml_io.ijk_to_ras(self.volume) @ np.array([*ijk, 1.0]))[:3]

    def show_slice(self, k):
        self.slice_node.JumpSliceByOffsetting(*self.ras([0, 0, k]))
        self.slice_node.UpdateMatrices()

    def xy(self, ijk):
        matrix = self.slice_node.GetXYToRAS()
        xy_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        xy = np.linalg.inv(xy_to_ras) @ np.array([*self.ras(ijk), 1.0])
        return int(round(xy[0])), int(round(xy[1]))

    # what the user does
    def drag(self, start_ijk, end_ijk):
        import vtk

        self.effect.processInteractionEvents(
            Interactor(self.xy(start_ijk)), vtk.vtkCommand.LeftButtonPressEvent, self.view
        )
        return self.effect.processInteractionEvents(
            Interactor(self.xy(end_ijk)), vtk.vtkCommand.LeftButtonReleaseEvent, self.view
        )

    def click(self, ijk, exclude=False):
        import vtk

        events = (
            (vtk.vtkCommand.RightButtonPressEvent, vtk.vtkCommand.RightButtonReleaseEvent)
            if exclude
            else (vtk.vtkCommand.LeftButtonPressEvent, vtk.vtkCommand.LeftButtonReleaseEvent)
        )
        for event in events:
            self.effect.processInteractionEvents(Interactor(self.xy(ijk)), event, self.view)

    def segment(self, segment_id=None):
        """The segment as a ``[K, J, I]`` bool array in the volume's geometry."""
        from SAMZeroShotLib import mrml_io

        [mask] = mrml_io.segment_masks(
            self.segmentation, [segment_id or self.segment_id], self.volume
        ).values()
        return mask


@pytest.fixture(params=VERSIONS)
def editor(request, tmp_path, slicerio_data, engines):
    version = request.param
    if not slicer_layer.layer_path(version).is_dir():
        pytest.skip(f"Slicer's Python layer {version} is not here")
    activation = slicer_layer.activate(version, tmp_path / "slicer-cache")
    import slicer

    qt = sys.modules["qt"]
    qt.QPoint, qt.QVector3D = QPoint, QVector3D
    logic = slicer.vtkSlicerSegmentEditorLogic
    slicer.qSlicerSegmentEditorAbstractEffect = types.SimpleNamespace(
        ModificationModeSet=logic.ModificationModeSet,
        ModificationModeAdd=logic.ModificationModeAdd,
        ModificationModeRemove=logic.ModificationModeRemove,
    )
    _slicer_effects_package(version)
    try:
        made = Editor(activation, slicerio_data)
        made.effect.engines = engines  # the test session's (see conftest.py), not one of its own
        yield made
    finally:
        del slicer.qSlicerSegmentEditorAbstractEffect
        for name in (
            "SegmentEditorEffects",
            "SegmentEditorEffects.AbstractScriptedSegmentEditorEffect",
        ):
            sys.modules.pop(name, None)
        slicer_layer.deactivate(activation)


def lung_box(mask2d):
    """IJK corners ``(i, j)`` of the box around a ``[J, I]`` mask."""
    js, is_ = np.nonzero(mask2d)
    return (int(is_.min()), int(js.min())), (int(is_.max()), int(js.max()))


def best_slice(mask):
    return int(np.argmax(mask.sum(axis=(1, 2))))


def dice(a, b):
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_the_effect_is_slicers_scripted_effect_named_sam(editor):
    effect = editor.effect
    base = sys.modules["SegmentEditorEffects"].AbstractScriptedSegmentEditorEffect
    assert isinstance(effect, base)
    assert editor.adaptor.name == "SAM" and editor.adaptor.perSegment
    assert {w.text for w in editor.adaptor.options if hasattr(w, "text")} >= {
        "Fill the volume",
        "Refine all slices",
    }


def test_a_box_on_a_slice_segments_that_slice_only_and_undo_restores_it(editor):
    k = best_slice(editor.right_lung)
    (i0, j0), (i1, j1) = lung_box(editor.right_lung[k])
    editor.show_slice(k)
    assert editor.drag((i0, j0, k), (i1, j1, k)) is True
    result = editor.segment()
    assert result[k].any()
    assert not np.delete(result, k, axis=0).any(), "a box changed other slices"
    assert dice(result[k], editor.right_lung[k]) > 0.8
    editor.logic.Undo()
    assert not editor.segment().any()


def test_the_editable_area_is_respected(editor):
    import slicer

    k = best_slice(editor.right_lung)
    (i0, j0), (i1, j1) = lung_box(editor.right_lung[k])
    area = np.zeros_like(editor.right_lung)
    area[:, :, : (i0 + i1) // 2] = True  # the columns left of the lung's middle
    from SAMZeroShotLib import mrml_io

    mrml_io.set_segment_mask(
        editor.segmentation, editor.other_id, area, mrml_io.ijk_to_ras(editor.volume)
    )
    editor.editor_node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    editor.editor_node.SetMaskSegmentID(editor.other_id)
    editor.show_slice(k)
    editor.drag((i0, j0, k), (i1, j1, k))
    result = editor.segment()
    assert result[k].any() and (editor.right_lung[k] & ~area[k]).any()
    assert not (result & ~area).any(), "the effect wrote outside the editable area"


def test_an_exclude_click_removes_a_leak(editor):
    k = best_slice(editor.right_lung)
    (i0, j0), (i1, j1) = lung_box(editor.right_lung[k])
    editor.show_slice(k)
    editor.drag((i0, j0, k), (i1, j1, k))
    before = editor.segment()
    # The largest wrong part is where the user clicks to exclude (the simulated user's choice).
    from SAMZeroShotLib.corrections import next_click

    leak = before[k] & ~editor.right_lung[k]
    click = next_click(leak, np.zeros_like(leak))
    editor.click((click.col, click.row, k), exclude=True)
    after = editor.segment()
    assert not after[k, click.row, click.col]
    assert after[k].sum() < before[k].sum()
    assert np.array_equal(np.delete(after, k, axis=0), np.delete(before, k, axis=0))


def test_an_oblique_view_is_refused_in_one_line(editor):
    import vtk

    k = best_slice(editor.right_lung)
    editor.show_slice(k)
    rotation = vtk.vtkTransform()
    rotation.RotateX(20)
    editor.slice_node.GetSliceToRAS().DeepCopy(rotation.GetMatrix())
    editor.slice_node.UpdateMatrices()
    (i0, j0), (i1, j1) = lung_box(editor.right_lung[k])
    editor.drag((i0, j0, k), (i1, j1, k))
    assert not editor.segment().any()
    assert "aligned with the volume's axes" in editor.effect.messageLabel.text
    assert "\n" not in editor.effect.messageLabel.text


def test_fill_the_volume_segments_the_other_slices_and_keeps_the_drawn_one(editor):
    k = best_slice(editor.right_lung)
    (i0, j0), (i1, j1) = lung_box(editor.right_lung[k])
    editor.show_slice(k)
    editor.drag((i0, j0, k), (i1, j1, k))
    drawn = editor.segment()[k].copy()
    editor.effect.onFillVolume()
    filled = editor.segment()
    assert np.array_equal(filled[k], drawn)
    slices = np.flatnonzero(filled.any(axis=(1, 2)))
    reference = np.flatnonzero(editor.right_lung.any(axis=(1, 2)))
    assert len(slices) >= 0.6 * len(reference)
    assert dice(filled, editor.right_lung) > 0.7
    editor.logic.Undo()
    assert np.array_equal(editor.segment()[k], drawn) and editor.segment().sum() == drawn.sum()


def test_the_hidden_module_registers_the_effect_with_the_editor(editor, monkeypatch):
    import slicer

    registered = []
    factory = types.SimpleNamespace(registerEffect=registered.append)
    slicer.qSlicerSegmentEditorEffectFactory = types.SimpleNamespace(instance=lambda: factory)
    adaptors = types.ModuleType("qSlicerSegmentationsEditorEffectsPythonQt")
    adaptors.qSlicerSegmentEditorScriptedEffect = lambda parent: Adaptor(
        editor.logic, editor.editor_node
    )
    monkeypatch.setitem(sys.modules, adaptors.__name__, adaptors)
    app = slicer.app
    app.__dict__["startupCompleted"] = slicer_layer.Signal(app)
    try:
        spec = importlib.util.spec_from_file_location("SegmentEditorSAM", MODULE_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parent = types.SimpleNamespace(path=str(MODULE_FILE))
        module.SegmentEditorSAM(parent)
        assert parent.hidden is True and not registered
        app.startupCompleted.emit()
        [adaptor] = registered
        assert adaptor.python_source == str(EFFECT_FILE).replace("\\", "/")
        assert adaptor.name == "SAM"
    finally:
        del slicer.qSlicerSegmentEditorEffectFactory


def test_refine_all_slices_resegments_each_drawn_slice_in_place(editor):
    from SAMZeroShotLib import mrml_io

    k = best_slice(editor.right_lung)
    rough = np.zeros_like(editor.right_lung)
    (i0, j0), (i1, j1) = lung_box(editor.right_lung[k])
    rough[k, j0 : j1 + 1, i0 : i1 + 1] = True  # the lung's box, filled: a rough first draft
    mrml_io.set_segment_mask(
        editor.segmentation, editor.segment_id, rough, mrml_io.ijk_to_ras(editor.volume)
    )
    editor.effect.onRefineAllSlices()
    refined = editor.segment()
    assert not np.delete(refined, k, axis=0).any()
    assert dice(refined[k], editor.right_lung[k]) > dice(rough[k], editor.right_lung[k]) + 0.05
    editor.logic.Undo()
    assert np.array_equal(editor.segment(), rough)
