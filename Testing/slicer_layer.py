"""Slicer's own Python layer on slicer-core's real MRML, with Qt stood in for.

3D Slicer cannot be installed here, but its pure-Python layer (``ScriptedLoadableModule``,
``parameterNodeWrapper``, ``i18n``, ``util``; kept unchanged outside this repository in
``../shared/slicer-layer/<version>/slicer``) runs on slicer-core's MRML once the few things that
need Qt exist. :func:`activate` puts that layer on ``slicer.__path__`` and installs:

* ``qt`` and ``ctk`` **stand-ins**: plain Python objects with the properties, signals and slots
  that Slicer's layer and the module use (a widget tree, combo boxes, check boxes, buttons,
  message boxes whose answers a test queues, ``QUiLoader`` building widgets from the real ``.ui``
  file). Nothing is drawn and no event loop runs: they replace Qt, which cannot run here.
* ``slicer.app``: a **stand-in** for the application (settings, cache folder, testing mode,
  ``processEvents`` that runs a test's hook, an IO manager that loads files with the real
  Volumes and Segmentations logics).
* ``slicer.qMRMLNodeComboBox``, ``qMRMLSegmentSelectorWidget``, ``qMRMLWidget``: **stand-ins**
  for Slicer's Qt MRML widgets, reading the real scene.
* ``slicer.mrmlScene``: a real headless scene (``SAMZeroShotLib.headless.new_scene``).

Everything else (the parameter node wrapper and its serializers, the module base classes,
``slicer.util``) is Slicer's real code. :func:`deactivate` restores the interpreter.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = ROOT / "SAMZeroShot" / "SAMZeroShot.py"
#: Where Slicer's layer is kept: beside the project, or where this variable points.
LAYER_ENV = "SAMZEROSHOT_SLICER_LAYER"


def layer_root() -> Path:
    return Path(os.environ.get(LAYER_ENV) or ROOT.parent / "shared" / "slicer-layer")


def layer_path(version: str) -> Path:
    return layer_root() / version / "slicer"


# ---------------------------------------------------------------------------------------------
# Qt stand-ins
# ---------------------------------------------------------------------------------------------
class Signal:
    """A bound signal: ``connect``/``disconnect``/``emit``, as PythonQt exposes them."""

    def __init__(self, owner):
        self._owner = owner
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot=None):
        if slot is None:
            self._slots.clear()
        elif slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args):
        if getattr(self._owner, "_signalsBlocked", False):
            return
        for slot in list(self._slots):
            _call_slot(slot, args)


def _call_slot(slot, args):
    """Call ``slot`` with as many of ``args`` as it takes (Qt drops the extra ones)."""
    import inspect

    try:
        signature = inspect.signature(slot)
    except (TypeError, ValueError):
        return slot(*args)
    parameters = list(signature.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return slot(*args)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return slot(*args[: len(positional)])


class QObject:
    """Parent/children, object name, dynamic properties and signals (old and new style)."""

    #: Signal names of this class (the union over the class hierarchy is used).
    signals = ("destroyed",)

    def __init__(self, *args, **kwargs):
        parent = next((a for a in args if isinstance(a, QObject)), None)
        self._children = []
        self._parent = None
        self._properties = {}
        self._signalsBlocked = False
        self.name = ""
        for klass in type(self).__mro__:
            for signal in getattr(klass, "signals", ()):
                if signal not in self.__dict__:
                    self.__dict__[signal] = Signal(self)
        if parent is not None:
            self.setParent(parent)
        for key, value in kwargs.items():
            setattr(self, key, value)

    # object tree
    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found += child.findChildren(cls)
        return found

    def setObjectName(self, name):
        self.name = name

    def objectName(self):
        return self.name

    def className(self):
        return type(self).__name__

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def blockSignals(self, block):
        previous, self._signalsBlocked = self._signalsBlocked, bool(block)
        return previous

    def signalsBlocked(self):
        return self._signalsBlocked

    # PythonQt's string-signature connections: widget.connect("clicked(bool)", slot)
    def connect(self, signature, slot):
        self._signal(signature).connect(slot)

    def disconnect(self, signature, slot=None):
        self._signal(signature).disconnect(slot)

    def _signal(self, signature):
        name = signature.split("(")[0]
        signal = self.__dict__.get(name)
        if not isinstance(signal, Signal):
            raise AttributeError(f"{type(self).__name__} stand-in has no signal {signature!r}")
        return signal

    def deleteLater(self):
        pass


class QWidget(QObject):
    signals = ("customContextMenuRequested",)

    def __init__(self, *args, **kwargs):
        self.enabled = True
        self.visible = False
        self.toolTip = ""
        self._layout = None
        super().__init__(*args, **kwargs)

    def setLayout(self, layout):
        self._layout = layout
        layout._widget = self

    def layout(self):
        return self._layout

    def setEnabled(self, enabled):
        self.enabled = bool(enabled)

    def isEnabled(self):
        return self.enabled

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setVisible(self, visible):
        self.visible = bool(visible)

    def setToolTip(self, text):
        self.toolTip = text


class QLayout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self._widget = None
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def _adopt(self, item):
        if isinstance(item, QWidget) and self._widget is not None:
            item.setParent(self._widget)
        elif isinstance(item, QLayout):
            item._widget = self._widget

    def addWidget(self, widget, *args):
        self._adopt(widget)

    def addLayout(self, layout, *args):
        self._adopt(layout)

    def addRow(self, *items):
        for item in items:
            if isinstance(item, (QWidget, QLayout)):
                self._adopt(item)

    def addStretch(self, *args):
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


def _text_and_parent(text, args):
    """Qt's (text, parent) and (parent) constructors."""
    if isinstance(text, str):
        return text, args
    return "", ((text,) if text is not None else ()) + tuple(args)


class QLabel(QWidget):
    def __init__(self, text="", *args, **kwargs):
        text, args = _text_and_parent(text, args)
        super().__init__(*args, **kwargs)
        self.text = text


class QAbstractButton(QWidget):
    signals = ("clicked", "toggled", "pressed", "released")

    def __init__(self, text="", *args, **kwargs):
        text, args = _text_and_parent(text, args)
        self.text = text
        self.checkable = False
        self._checked = False
        super().__init__(*args, **kwargs)

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        value = bool(value)
        if value != self._checked:
            self._checked = value
            self.toggled.emit(value)
            if "stateChanged" in self.__dict__:
                self.stateChanged.emit(2 if value else 0)

    def setChecked(self, value):
        self.checked = value

    def isChecked(self):
        return self.checked

    def click(self):
        """What a user's click does: nothing on a disabled button."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self.clicked.emit(self.checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    signals = ("stateChanged",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkable = True


class QComboBox(QWidget):
    signals = ("currentIndexChanged", "currentTextChanged", "activated")

    def __init__(self, *args, **kwargs):
        self._items = []
        self._currentIndex = -1
        super().__init__(*args, **kwargs)

    def addItem(self, text, userData=None):
        self._items.append(str(text))
        if self._currentIndex < 0:
            self.currentIndex = 0

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self._items = []
        self.currentIndex = -1

    def count(self):
        return len(self._items)

    def itemText(self, index):
        return self._items[index] if 0 <= index < len(self._items) else ""

    def findText(self, text):
        return self._items.index(text) if text in self._items else -1

    @property
    def currentIndex(self):
        return self._currentIndex

    @currentIndex.setter
    def currentIndex(self, index):
        index = int(index) if -1 <= int(index) < len(self._items) else -1
        if index != self._currentIndex:
            self._currentIndex = index
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    def setCurrentIndex(self, index):
        self.currentIndex = index

    @property
    def currentText(self):
        return self.itemText(self._currentIndex)

    def setCurrentText(self, text):
        self.currentIndex = self.findText(text)

    def select(self, text):
        """What a user picking ``text`` in the list does."""
        index = self.findText(text)
        if index < 0:
            raise ValueError(f"{self.name}: no item {text!r} (items: {self._items})")
        if not self.enabled:
            raise RuntimeError(f"{self.name} is disabled")
        self.currentIndex = index
        self.activated.emit(index)


class QLineEdit(QWidget):
    signals = ("textChanged", "editingFinished")

    def __init__(self, *args, **kwargs):
        self._text = ""
        super().__init__(*args, **kwargs)

    @property
    def text(self):
        return self._text

    @text.setter
    def text(self, value):
        if value != self._text:
            self._text = value
            self.textChanged.emit(value)


class QTextEdit(QWidget):
    pass


class QPlainTextEdit(QWidget):
    signals = ("textChanged",)

    def __init__(self, *args, **kwargs):
        self.plainText = ""
        self.readOnly = False
        super().__init__(*args, **kwargs)

    def appendPlainText(self, text):
        self.plainText = f"{self.plainText}\n{text}" if self.plainText else str(text)

    def setPlainText(self, text):
        self.plainText = str(text)

    def toPlainText(self):
        return self.plainText

    def clear(self):
        self.plainText = ""


class QProgressBar(QWidget):
    def __init__(self, *args, **kwargs):
        self.value = 0
        self.minimum = 0
        self.maximum = 100
        self.format = "%p%"
        self.textVisible = True
        super().__init__(*args, **kwargs)

    def setValue(self, value):
        self.value = int(value)

    def setRange(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class QDialog(QWidget):
    signals = ("accepted", "rejected", "finished")

    def __init__(self, *args, **kwargs):
        self.modal = False
        self.windowModality = _Enum.NonModal
        self.windowTitle = ""
        super().__init__(*args, **kwargs)

    def exec_(self):
        return 0

    exec = exec_

    def close(self):
        self.visible = False
        return True

    def setModal(self, modal):
        self.modal = bool(modal)
        if self.modal and self.windowModality == _Enum.NonModal:
            self.windowModality = _Enum.ApplicationModal

    def setWindowModality(self, modality):
        """As Qt: any modality but NonModal makes the dialog modal."""
        self.windowModality = modality
        self.modal = modality != _Enum.NonModal


class QProgressDialog(QDialog):
    """A modal progress dialog: shown, updated and closed; a test may press its Cancel."""

    signals = ("canceled",)

    def __init__(self, *args, **kwargs):
        self.labelText = ""
        self.value = 0
        self.minimum = 0
        self.maximum = 100
        self.minimumDuration = 0
        self.autoClose = True
        self._wasCanceled = False
        super().__init__(*args, **kwargs)
        # Qt's QProgressDialog is not modal until told (setWindowModality or setModal).
        _state().dialogs.append(self)

    def setValue(self, value):
        self.value = int(value)

    def setLabelText(self, text):
        self.labelText = text

    def setCancelButton(self, button):
        self.cancelButton = button

    def setCancelButtonText(self, text):
        self.cancelButtonText = text

    @property
    def wasCanceled(self):
        return self._wasCanceled

    def cancel(self):
        self._wasCanceled = True
        self.canceled.emit()


class QMessageBox(QDialog):
    """A message box whose answer the test queues with :func:`answer` (raises if none is queued)."""

    NoButton, Ok, Cancel, Yes, No, Retry, Close = (
        0,
        0x400,
        0x400000,
        0x4000,
        0x10000,
        0x80000,
        0x200000,
    )
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4

    def __init__(self, *args, **kwargs):
        self.text = ""
        self.detailedText = ""
        self.informativeText = ""
        self.icon = 0
        self.standardButtons = 0
        super().__init__(*args, **kwargs)

    def exec_(self):
        state = _state()
        state.messages.append(self.text)
        if not state.answers:
            raise AssertionError(
                f"a message box asked the user and the test gave no answer: {self.text!r}"
            )
        return state.answers.popleft()

    exec = exec_


class QSettings(QObject):
    """Application settings kept in memory for the test session."""

    def value(self, key, default=None):
        return _state().settings.get(key, default)

    def setValue(self, key, value):
        _state().settings[key] = value

    def contains(self, key):
        return key in _state().settings

    def remove(self, key):
        _state().settings.pop(key, None)


class QTimer(QObject):
    signals = ("timeout",)

    @staticmethod
    def singleShot(msec, callback):
        _state().timers.append(callback)


class QApplication:
    """The application's static functions that the layer calls on ``qt.QApplication``."""

    @staticmethod
    def overrideCursor():
        cursors = _state().override_cursors
        return cursors[-1] if cursors else None

    @staticmethod
    def setOverrideCursor(cursor):
        _state().override_cursors.append(cursor)

    @staticmethod
    def restoreOverrideCursor():
        cursors = _state().override_cursors
        if cursors:
            cursors.pop()

    @staticmethod
    def processEvents(*args):
        import slicer

        slicer.app.processEvents()


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists()

    def close(self):
        pass


class QIcon:
    def __init__(self, path=""):
        self.path = path


class QColor:
    def __init__(self, *args):
        self.args = args


class _Enum:
    NonModal = 0
    WaitCursor = 3
    ShiftModifier = 0x02000000
    ApplicationModal = 2
    WindowModal = 1
    AlignLeft = 1


def _load_ui(path):
    """Widgets, properties and signal/slot connections of a Qt Designer file, built as stand-ins."""
    tree = ET.parse(path)
    widgets = {}

    def build(element, parent):
        cls = _widget_class(element.get("class"))
        widget = cls(parent) if parent is not None else cls()
        widget.name = element.get("name", "")
        widgets[widget.name] = widget
        for prop in element.findall("property"):
            _set_property(widget, prop)
        _build_children(element, widget)
        return widget

    def _build_children(element, widget):
        for child in element:
            if child.tag == "widget":
                build(child, widget)
            elif child.tag in ("layout", "item"):
                if child.tag == "layout" and widget.layout() is None:
                    widget.setLayout(_widget_class(child.get("class"))())
                _build_children(child, widget)

    root = build(tree.getroot().find("widget"), None)
    for connection in tree.getroot().iter("connection"):
        sender = widgets[connection.findtext("sender")]
        receiver = widgets[connection.findtext("receiver")]
        slot = getattr(receiver, connection.findtext("slot").split("(")[0])
        sender.connect(connection.findtext("signal"), slot)
    return root


def _set_property(widget, prop):
    name = prop.get("name")
    value_element = next(iter(prop), None)
    if value_element is None:
        return
    if value_element.tag == "string":
        value = value_element.text or ""
    elif value_element.tag == "bool":
        value = value_element.text == "true"
    elif value_element.tag in ("number", "double"):
        value = (
            float(value_element.text) if value_element.tag == "double" else int(value_element.text)
        )
    elif value_element.tag == "stringlist":
        value = [item.text or "" for item in value_element.findall("string")]
    else:
        return  # geometry, fonts, enums: nothing the stand-ins use
    if prop.get("stdset") == "0":
        widget.setProperty(name, value)
    else:
        try:
            setattr(widget, name, value)
        except AttributeError:
            widget.setProperty(name, value)


class QUiLoader:
    def load(self, qfile, parent=None):
        return _load_ui(qfile.path)


# ---------------------------------------------------------------------------------------------
# ctk and Slicer widget stand-ins
# ---------------------------------------------------------------------------------------------
class ctkCollapsibleButton(QAbstractButton):
    def __init__(self, *args, **kwargs):
        self.collapsed = False
        super().__init__(*args, **kwargs)


class ctkPathLineEdit(QWidget):
    signals = ("currentPathChanged",)
    Files, Dirs, Exists, Readable = 1, 2, 4, 8

    def __init__(self, *args, **kwargs):
        self._currentPath = ""
        self.filters = 0
        self.nameFilters = []
        super().__init__(*args, **kwargs)

    @property
    def currentPath(self):
        return self._currentPath

    @currentPath.setter
    def currentPath(self, path):
        path = str(path)
        if path != self._currentPath:
            self._currentPath = path
            self.currentPathChanged.emit(path)

    def setCurrentPath(self, path):
        self.currentPath = path


class ctkComboBox(QComboBox):
    pass


class ctkCheckBox(QCheckBox):
    pass


class ctkMessageBox(QMessageBox):
    pass


class qMRMLWidget(QWidget):
    signals = ("mrmlSceneChanged",)

    def __init__(self, *args, **kwargs):
        self._scene = None
        super().__init__(*args, **kwargs)

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qSlicerWidget(qMRMLWidget):
    pass


class qMRMLNodeComboBox(qMRMLWidget):
    """Picks a node of ``nodeTypes`` in the real scene; follows node removal as Slicer's does."""

    signals = ("currentNodeChanged", "currentNodeIDChanged", "nodeAdded", "nodeAboutToBeRemoved")

    def __init__(self, *args, **kwargs):
        self.nodeTypes = []
        self.noneEnabled = False
        self.addEnabled = False
        self.removeEnabled = False
        self.renameEnabled = False
        self.showHidden = False
        self.showChildNodeTypes = True
        self._node = None
        self._observation = None
        super().__init__(*args, **kwargs)

    def setMRMLScene(self, scene):
        import vtk

        if self._scene is not None and self._observation is not None:
            self._scene.RemoveObserver(self._observation)
        super().setMRMLScene(scene)
        self._observation = None
        if scene is not None:
            self._observation = scene.AddObserver(scene.NodeRemovedEvent, self._onNodeRemoved)
            self._observation_priority = vtk.vtkCommand.NoEvent

    def _onNodeRemoved(self, scene, event):
        if self._node is not None and self._node.GetScene() is None:
            self.setCurrentNode(None)

    def _accepts(self, node):
        return node is None or any(node.IsA(node_type) for node_type in self.nodeTypes)

    def currentNode(self):
        return self._node

    def currentNodeID(self):
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node):
        if not self._accepts(node):
            raise TypeError(f"{self.name}: a {node.GetClassName()} is not one of {self.nodeTypes}")
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(self.currentNodeID())

    def setCurrentNodeID(self, node_id):
        self.setCurrentNode(self._scene.GetNodeByID(node_id) if node_id else None)


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    """Selects segments of the current segmentation node (all of them unless a test picks some)."""

    signals = ("currentNodeChanged", "currentSegmentChanged", "segmentSelectionChanged")

    def __init__(self, *args, **kwargs):
        self.multiSelection = False
        self.noneEnabled = False
        self.editEnabled = False
        self._node = None
        self._selected = []
        super().__init__(*args, **kwargs)

    def setCurrentNode(self, node):
        if node is not self._node:
            self._node = node
            self._selected = []
            self.currentNodeChanged.emit(node)

    def currentNode(self):
        return self._node

    def setSelectedSegmentIDs(self, ids):
        self._selected = list(ids)
        self.segmentSelectionChanged.emit(self._selected)

    def selectedSegmentIDs(self):
        return list(self._selected)


class qMRMLSegmentationShow3DButton(QToolButton):
    """Holds the segmentation it shows in 3D; a click toggles its closed surface, as Slicer's
    button does (nothing is drawn here)."""

    def __init__(self, *args, **kwargs):
        self._segmentationNode = None
        super().__init__(*args, **kwargs)
        self.checkable = True

    def setSegmentationNode(self, node):
        self._segmentationNode = node

    def segmentationNode(self):
        return self._segmentationNode

    def click(self):
        super().click()
        node = self._segmentationNode
        if node is not None and self.enabled:
            if self.checked:
                node.CreateClosedSurfaceRepresentation()
            else:
                node.RemoveClosedSurfaceRepresentation()


#: Classes of the stand-in modules by name; anything else the layer names at import time (for
#: type checks such as ``type(widget) == qt.QSlider``) becomes a plain stand-in widget class.
_QT = {
    cls.__name__: cls
    for cls in (
        QObject,
        QWidget,
        QLayout,
        QVBoxLayout,
        QHBoxLayout,
        QFormLayout,
        QGridLayout,
        QLabel,
        QAbstractButton,
        QPushButton,
        QToolButton,
        QCheckBox,
        QComboBox,
        QLineEdit,
        QTextEdit,
        QPlainTextEdit,
        QProgressBar,
        QDialog,
        QProgressDialog,
        QMessageBox,
        QSettings,
        QTimer,
        QApplication,
        QFile,
        QIcon,
        QColor,
        QUiLoader,
    )
}
_CTK = {
    cls.__name__: cls
    for cls in (ctkCollapsibleButton, ctkPathLineEdit, ctkComboBox, ctkCheckBox, ctkMessageBox)
}
_SLICER_WIDGETS = {
    cls.__name__: cls
    for cls in (
        qMRMLWidget,
        qSlicerWidget,
        qMRMLNodeComboBox,
        qMRMLSegmentSelectorWidget,
        qMRMLSegmentationShow3DButton,
    )
}


def _stand_in_module(name, classes, extra=None):
    module = types.ModuleType(
        name, f"Stand-in for {name} (Qt cannot run here): see Testing/slicer_layer.py"
    )
    for class_name, cls in classes.items():
        setattr(module, class_name, cls)
    for key, value in (extra or {}).items():
        setattr(module, key, value)
    made = {}

    def __getattr__(attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if attribute not in made:
            made[attribute] = type(
                attribute, (QWidget,), {"__doc__": f"Placeholder stand-in for {name}.{attribute}"}
            )
        return made[attribute]

    module.__getattr__ = __getattr__
    return module


_SLICER_PLACEHOLDERS = {}


def _slicer_widget_placeholder(attribute):
    """``slicer.qMRML*``/``slicer.qSlicer*`` Qt widgets the layer names in type checks (the
    package's ``__getattr__`` while active); any other missing name stays an AttributeError."""
    if not attribute.startswith(("qMRML", "qSlicer")):
        raise AttributeError(f"module 'slicer' has no attribute {attribute!r}")
    if attribute not in _SLICER_PLACEHOLDERS:
        _SLICER_PLACEHOLDERS[attribute] = type(
            attribute, (qMRMLWidget,), {"__doc__": f"Placeholder stand-in for slicer.{attribute}"}
        )
    return _SLICER_PLACEHOLDERS[attribute]


def _widget_class(class_name):
    for module in (sys.modules["qt"], sys.modules["ctk"]):
        if class_name in module.__dict__:
            return module.__dict__[class_name]
    if class_name in _SLICER_WIDGETS:
        return _SLICER_WIDGETS[class_name]
    return getattr(sys.modules["qt"], class_name)


# ---------------------------------------------------------------------------------------------
# slicer.app stand-in
# ---------------------------------------------------------------------------------------------
class _State:
    """What the stand-ins share during one activation (reset by :func:`activate`)."""

    def __init__(self):
        self.settings = {}
        self.answers = deque()
        self.messages = []
        self.dialogs = []
        self.timers = []
        self.process_events_hooks = []
        self.pumps = 0
        self.override_cursors = []


_STATE = [None]


def _state() -> _State:
    return _STATE[0]


def answer(*buttons):
    """Queue the buttons a user presses in the next message boxes (``qt.QMessageBox.Ok``, ...)."""
    _state().answers.extend(buttons)


class _CommandOptions:
    def __init__(self, testing):
        self.testingEnabled = testing
        self.runPythonAndExit = False


class _IOManager:
    """Loads files as ``qSlicerCoreIOManager`` does, with the real Volumes and Segmentations
    logics."""

    def __init__(self, application_logic):
        self._logics = application_logic.samzeroshot_logics

    @staticmethod
    def fileType(filename):
        name = str(filename).lower()
        return "SegmentationFile" if name.endswith(".seg.nrrd") else "VolumeFile"

    def loadNodes(self, filetype, properties, loaded, messages=None):
        path = properties["fileName"]
        if filetype == "SegmentationFile":
            node = self._logics["Segmentations"].LoadSegmentationFromFile(path, False)
        elif filetype == "VolumeFile":
            name = properties.get("name") or Path(path).name.split(".")[0]
            node = self._logics["Volumes"].AddArchetypeVolume(path, name, 0)
        else:
            raise ValueError(f"The IO manager stand-in does not load {filetype}")
        if node is None:
            return False
        loaded.AddItem(node)
        return True


class _ModuleManager(QObject):
    signals = ("moduleAboutToBeUnloaded", "moduleLoaded")


class SlicerApplication(QObject):
    """Stand-in for ``slicer.app`` (qSlicerApplication)."""

    applicationName = "Slicer"
    documentationBaseUrl = "https://slicer.readthedocs.io/en/latest/"

    def __init__(self, scene, application_logic, cache_path, testing=True):
        super().__init__()
        self._scene = scene
        self._application_logic = application_logic
        self._options = _CommandOptions(testing)
        self._io = _IOManager(application_logic)
        self._modules = _ModuleManager()
        Path(cache_path).mkdir(parents=True, exist_ok=True)  # Slicer makes these at start-up
        self.cachePath = str(cache_path)
        self.temporaryPath = str(cache_path)
        self.slicerHome = str(cache_path)

    def commandOptions(self):
        return self._options

    def testingEnabled(self):
        return self._options.testingEnabled

    def processEvents(self, *args):
        """Runs the hooks a test registered (a user acting while a job runs), once per call."""
        state = _state()
        state.pumps += 1
        for hook in list(state.process_events_hooks):
            hook()

    def translate(self, context, text):
        return text

    def moduleDocumentationUrl(self, name):
        return self.documentationBaseUrl + name

    def moduleManager(self):
        return self._modules

    def coreIOManager(self):
        return self._io

    def applicationLogic(self):
        return self._application_logic

    def layoutManager(self):
        return None  # no views: nothing is drawn here

    def userSettings(self):
        return QSettings()

    def settings(self):
        return QSettings()

    def topLevelWidgets(self):
        return []

    def setOverrideCursor(self, cursor):
        QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self):
        QApplication.restoreOverrideCursor()

    def mrmlScene(self):
        return self._scene


class _Namespace:
    pass


# ---------------------------------------------------------------------------------------------
# activation
# ---------------------------------------------------------------------------------------------
_REPLACED = ("qt", "ctk", "SAMZeroShot")
_LAYER_MODULES = (
    "slicer.util",
    "slicer.ScriptedLoadableModule",
    "slicer.parameterNodeWrapper",
    "slicer.i18n",
    "slicer.packaging",
)
_SLICER_ATTRIBUTES = (
    "__getattr__",
    "app",
    "mrmlScene",
    "modules",
    "selfTests",
    "util",
    "ScriptedLoadableModule",
    "parameterNodeWrapper",
    "i18n",
    "packaging",
    "qMRMLWidget",
    "qSlicerWidget",
    "qMRMLNodeComboBox",
    "qMRMLSegmentSelectorWidget",
    "qMRMLSegmentationShow3DButton",
)


#: Data nodes that Slicer's subject hierarchy plugins own (a tree item each).
_SUBJECT_HIERARCHY_CLASSES = (
    "vtkMRMLVolumeNode",
    "vtkMRMLSegmentationNode",
    "vtkMRMLModelNode",
    "vtkMRMLMarkupsNode",
    "vtkMRMLTransformNode",
    "vtkMRMLTableNode",
    "vtkMRMLPlotChartNode",
    "vtkMRMLPlotSeriesNode",
)


def _subject_hierarchy_item_adder(scene):
    """As Slicer's subject hierarchy plugin logic (Qt) does: every data node added to the scene
    gets an item under the scene's root, where a module may move it."""
    import slicer
    import vtk

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def add_item(caller, event, node):
        if node is None or node.GetHideFromEditors() or node.GetSingletonTag():
            return
        if not any(node.IsA(name) for name in _SUBJECT_HIERARCHY_CLASSES):
            return
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        if hierarchy is not None and not hierarchy.GetItemByDataNode(node):
            hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)

    return add_item


class Activation:
    """What :func:`activate` returns: the scene, the stand-in application and the loaded module
    file."""

    def __init__(self, version, scene, application_logic, app, module):
        self.widgets = []  # module widgets to clean up, as Slicer does when it unloads the module
        self.version = version
        self.scene = scene
        self.application_logic = application_logic
        self.app = app
        self.module = module

    @property
    def state(self) -> _State:
        return _state()


def _forget(names):
    for name in list(sys.modules):
        if any(name == n or name.startswith(n + ".") for n in names):
            del sys.modules[name]


def activate(version: str, cache_path, testing: bool = True) -> Activation:
    """Slicer ``version``'s Python layer with Qt stood in for, a real scene, and SAMZeroShot.py
    loaded."""
    import slicer

    path = layer_path(version)
    if not path.is_dir():
        raise FileNotFoundError(f"Slicer's Python layer for {version} is not at {path}")
    from SAMZeroShotLib import headless

    _STATE[0] = _State()
    saved = {
        "path": list(slicer.__path__),
        "attributes": {
            name: slicer.__dict__[name] for name in _SLICER_ATTRIBUTES if name in slicer.__dict__
        },
        "modules": {
            name: module
            for name, module in sys.modules.items()
            if any(name == n or name.startswith(n + ".") for n in _REPLACED + _LAYER_MODULES)
        },
    }
    _forget(_REPLACED + _LAYER_MODULES)
    sys.modules["qt"] = _stand_in_module("qt", _QT, {"Qt": _Enum})
    sys.modules["ctk"] = _stand_in_module("ctk", _CTK)
    slicer.__path__[:] = [str(path)] + saved["path"]  # Slicer's files win over slicer-core's util

    scene, application_logic = headless.new_scene()
    plots = slicer.vtkSlicerPlotsLogic()
    plots.SetMRMLApplicationLogic(application_logic)
    plots.SetMRMLScene(scene)
    application_logic.samzeroshot_logics["Plots"] = plots

    # Slicer's subject hierarchy plugin logic (Qt) puts the hierarchy node back after every scene
    # close; without it the node would appear whenever a node is next added.
    def resolve(caller, event):
        slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)

    resolve_tag = scene.AddObserver(scene.EndCloseEvent, resolve)
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    item_tag = scene.AddObserver(scene.NodeAddedEvent, _subject_hierarchy_item_adder(scene))
    app = SlicerApplication(scene, application_logic, cache_path, testing)
    app.applicationVersion = f"{version} (Python layer)"
    slicer.app = app
    slicer.mrmlScene = scene
    for name, cls in _SLICER_WIDGETS.items():
        setattr(slicer, name, cls)
    slicer.__getattr__ = _slicer_widget_placeholder
    slicer.modules = _Namespace()
    slicer.modules.plots = types.SimpleNamespace(logic=lambda: plots)
    slicer.util = importlib.import_module("slicer.util")
    for name in ("ScriptedLoadableModule", "parameterNodeWrapper", "i18n"):
        setattr(slicer, name, importlib.import_module(f"slicer.{name}"))
    for name in ("util", "ScriptedLoadableModule", "parameterNodeWrapper", "i18n"):
        module_file = Path(sys.modules[f"slicer.{name}"].__file__).resolve()
        assert path.resolve() in module_file.parents, (
            f"slicer.{name} came from {module_file}, not {path}"
        )

    spec = importlib.util.spec_from_file_location("SAMZeroShot", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["SAMZeroShot"] = module
    spec.loader.exec_module(module)
    slicer.modules.samzeroshot = types.SimpleNamespace(path=str(MODULE_FILE), name="SAMZeroShot")
    activation = Activation(version, scene, application_logic, app, module)
    activation._saved = saved
    activation._resolve_tag = resolve_tag
    activation._item_tag = item_tag
    return activation


def deactivate(activation: Activation) -> None:
    """Put back what :func:`activate` replaced; the scene is cleared."""
    import slicer

    saved = activation._saved
    for widget in activation.widgets:
        widget.cleanup()
    activation.scene.RemoveObserver(activation._resolve_tag)
    activation.scene.RemoveObserver(activation._item_tag)
    activation.scene.Clear(1)
    _forget(_REPLACED + _LAYER_MODULES)
    sys.modules.update(saved["modules"])
    slicer.__path__[:] = saved["path"]
    for name in _SLICER_ATTRIBUTES:
        slicer.__dict__.pop(name, None)
    slicer.__dict__.update(saved["attributes"])
    _STATE[0] = None
