"""A hidden module that registers the Segment Editor effect "SAM" when Slicer has started.

Scripted effects are registered as the segment editor's abstract effect class documents: an
adaptor (``qSlicerSegmentEditorScriptedEffect``) is given the effect's Python file and registers
itself with the effect factory. The effect is in ``SegmentEditorSAMLib/SegmentEditorEffect.py``.
"""

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

EFFECT_FILE = os.path.join(
    os.path.dirname(__file__), "SegmentEditorSAMLib", "SegmentEditorEffect.py"
)


class SegmentEditorSAM(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Segment Editor SAM"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SAMZeroShot developers"]
        self.parent.hidden = True
        self.parent.helpText = (
            "Adds the effect SAM to the Segment Editor: a box and clicks on a slice, then the"
            " whole volume (see the SAM Zero-Shot module)."
        )
        self.parent.acknowledgementText = "See the SAM Zero-Shot module."
        slicer.app.connect("startupCompleted()", registerEffect)


def registerEffect():
    """Register the effect with the segment editor (once Slicer's effects are there)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(EFFECT_FILE.replace("\\", "/"))
    instance.self().register()
