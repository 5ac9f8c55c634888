"""The Segment Editor effect "SAM": a box and clicks on a slice, then the whole volume.

Registered by the hidden module ``SegmentEditorSAM`` when Slicer has started. Every change goes
through the editor's own path (``saveStateForUndo`` and ``modifySelectedSegmentByLabelmap``), so
undo, the editable area, masking by intensity and the overwrite rules apply as in any other
effect. The model work is in the Qt-free :mod:`SAMZeroShotLib.editor_session`.
"""

import os

import numpy as np
import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

#: A press and release closer than this (pixels of the view) is a click, farther a box.
CLICK_PIXELS = 3
HELP = """<html>Segment with SAM (LiteMedSAM, on the CPU), one slice at a time.<p><ul>
<li><b>Left-drag:</b> a box around the structure: the selected segment on this slice becomes
SAM's mask for it.
<li><b>Left-click:</b> include the clicked place (where the mask misses).
<li><b>Shift+left-click</b> or <b>right-click:</b> exclude it (where the mask leaks).
<li><b>Fill the volume:</b> segment every slice from the slices the segment has content on.
<li><b>Refine all slices:</b> each slice's content becomes SAM's prompt for that slice.
</ul><p>The first box or click on a slice encodes it (about a second on a CPU); later ones on the
same slice only decode. Works in slice views aligned with the volume's axes.</html>"""


def _array(image):
    """The scalars of a vtkImageData as a ``[K, J, I]`` array (a view: writing writes it)."""
    from vtk.util.numpy_support import vtk_to_numpy

    dims = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


def _matrix(image, extent):
    """IJK-to-RAS of the array that starts at the corner of ``extent``."""
    imageToWorld = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(imageToWorld)
    matrix = np.array([[imageToWorld.GetElement(r, c) for c in range(4)] for r in range(4)])
    shift = np.eye(4)
    shift[:3, 3] = [extent[0], extent[2], extent[4]]
    return matrix @ shift


def _copyInto(target, targetExtent, source, sourceExtent):
    """Copy the overlap of two ``[K, J, I]`` arrays placed at their extents' corners."""
    low = [max(targetExtent[2 * a], sourceExtent[2 * a]) for a in range(3)]
    high = [min(targetExtent[2 * a + 1], sourceExtent[2 * a + 1]) + 1 for a in range(3)]
    if any(h <= lo for lo, h in zip(low, high, strict=True)):
        return

    def window(extent):
        return tuple(slice(low[a] - extent[2 * a], high[a] - extent[2 * a]) for a in (2, 1, 0))

    target[window(targetExtent)] = source[window(sourceExtent)]


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Box and clicks on a slice, then "Fill the volume" or "Refine all slices"."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "SAM"  # not translated: modules find effects by name
        scriptedEffect.title = "SAM"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.session = None
        self.sessionKey = None
        self.pressed = None  # (x, y, exclude) of a press not yet released
        # The effect's own SAMZeroShotLib.engines.EngineFactory, made on first use (the library
        # may not be installed yet when the effect is registered).
        self.engines = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        path = os.path.join(
            os.path.dirname(__file__), "..", "Resources", "Icons", "SAMZeroShot.png"
        )
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return HELP

    def setupOptionsFrame(self):
        self.messageLabel = qt.QLabel()
        self.scriptedEffect.addOptionsWidget(self.messageLabel)
        self.fillButton = qt.QPushButton("Fill the volume")
        self.fillButton.toolTip = "Segment every slice from the slices this segment has content on."
        self.fillButton.connect("clicked()", self.onFillVolume)
        self.scriptedEffect.addOptionsWidget(self.fillButton)
        self.refineButton = qt.QPushButton("Refine all slices")
        self.refineButton.toolTip = "Each slice's content becomes SAM's prompt for that slice."
        self.refineButton.connect("clicked()", self.onRefineAllSlices)
        self.scriptedEffect.addOptionsWidget(self.refineButton)

    def activate(self):
        self.messageLabel.text = ""

    def deactivate(self):
        self.pressed = None

    # -- the view ------------------------------------------------------------------------------
    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if viewWidget.className() != "qMRMLSliceWidget":
            return False
        xy = tuple(callerInteractor.GetEventPosition())
        if eventId in (vtk.vtkCommand.LeftButtonPressEvent, vtk.vtkCommand.RightButtonPressEvent):
            exclude = (
                eventId == vtk.vtkCommand.RightButtonPressEvent or callerInteractor.GetShiftKey()
            )
            self.pressed = (xy, bool(exclude))
            return True
        if eventId in (
            vtk.vtkCommand.LeftButtonReleaseEvent,
            vtk.vtkCommand.RightButtonReleaseEvent,
        ):
            if self.pressed is None:
                return False
            (start, exclude), self.pressed = self.pressed, None
            if max(abs(xy[0] - start[0]), abs(xy[1] - start[1])) < CLICK_PIXELS:
                self.onClick(xy, viewWidget, include=not exclude)
            elif not exclude:
                self.onBox(start, xy, viewWidget)
            return True
        return False

    def _say(self, text):
        self.messageLabel.text = text
        return None

    def _sessionAndAxis(self, viewWidget):
        """The session for the source volume and the array axis the view shows (None: refused)."""
        from SAMZeroShotLib.editor_session import view_axis
        from SAMZeroShotLib.errors import UserError

        session = self._session()
        if session is None:
            return None, None
        sliceToRAS = viewWidget.mrmlSliceNode().GetSliceToRAS()
        normal = [sliceToRAS.GetElement(r, 2) for r in range(3)]
        try:
            return session, view_axis(session.ijk_to_ras, normal)
        except UserError as error:
            return self._say(str(error)), None

    def _session(self):
        """The Qt-free session on the editor's source volume, made again when it changes."""
        image = self.scriptedEffect.sourceVolumeImageData()
        if image is None:
            return self._say("Select a source volume first.")
        extent = image.GetExtent()
        key = (image.GetMTime(), tuple(extent))
        if self.session is None or self.sessionKey != key:
            try:
                from SAMZeroShotLib.editor_session import EditorSession
                from SAMZeroShotLib.engines import EngineFactory
                from SAMZeroShotLib.parameters import Parameters
            except ImportError:
                return self._say("Open the SAM Zero-Shot module once to install its packages.")
            if self.engines is None:
                self.engines = EngineFactory()
            engine = self.engines.get(Parameters())
            volume = np.array(_array(image), dtype=np.float32)
            self.session = EditorSession(engine, volume, _matrix(image, extent))
            self.sessionKey = key
        return self.session

    def _ijk(self, xy, viewWidget):
        image = self.scriptedEffect.sourceVolumeImageData()
        ijk = self.xyToIjk(xy, viewWidget, image)
        extent = image.GetExtent()
        return [ijk[0] - extent[0], ijk[1] - extent[2], ijk[2] - extent[4]]

    # -- the data path -------------------------------------------------------------------------
    def _content(self):
        """The selected segment as a ``[K, J, I]`` bool array in the source volume's frame."""
        frame = self.scriptedEffect.sourceVolumeImageData().GetExtent()
        content = np.zeros(self.session.volume.shape, bool)
        labelmap = self.scriptedEffect.selectedSegmentLabelmap()
        if labelmap is not None and labelmap.GetPointData().GetScalars() is not None:
            _copyInto(content, frame, _array(labelmap) > 0, labelmap.GetExtent())
        return content

    def _apply(self, mask, slices=None):
        """Set the selected segment to ``mask`` (on ``slices`` of the view's axis, or everywhere)
        through the editor, undoable."""
        frame = self.scriptedEffect.sourceVolumeImageData().GetExtent()
        modifier = self.scriptedEffect.defaultModifierLabelmap()
        target = _array(modifier)
        target[:] = 0
        _copyInto(target, modifier.GetExtent(), mask.astype(target.dtype), frame)
        extent = list(frame)
        if slices is not None:
            axis, s = slices
            ijk = 2 - axis
            extent[2 * ijk] = extent[2 * ijk + 1] = frame[2 * ijk] + s
        modifier.Modified()
        self.scriptedEffect.saveStateForUndo()
        self.scriptedEffect.modifySelectedSegmentByLabelmap(
            modifier, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet, extent
        )

    def onBox(self, start, end, viewWidget):
        session, axis = self._sessionAndAxis(viewWidget)
        if session is None or axis is None:
            return
        segment = self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()
        corners = [self._ijk(start, viewWidget), self._ijk(end, viewWidget)]
        s, mask = session.box(segment, axis, corners)
        self._apply(mask, (axis, s))
        self._say("")

    def onClick(self, xy, viewWidget, include):
        from SAMZeroShotLib.errors import UserError

        session, axis = self._sessionAndAxis(viewWidget)
        if session is None or axis is None:
            return
        segment = self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()
        try:
            s, mask = session.click(
                segment, axis, self._ijk(xy, viewWidget), include, self._content()
            )
        except UserError as error:
            return self._say(str(error))
        self._apply(mask, (axis, s))
        self._say("")

    def _wholeVolume(self, run):
        from SAMZeroShotLib.errors import UserError

        session = self._session()
        if session is None:
            return
        try:
            mask = run(session, self._content(), 0)
        except UserError as error:
            return self._say(str(error))
        self._apply(mask)
        self._say("")

    def onFillVolume(self):
        self._wholeVolume(lambda session, content, axis: session.fill(content, axis))

    def onRefineAllSlices(self):
        self._wholeVolume(lambda session, content, axis: session.refine(content, axis))
