"""SAMZeroShotLib.parameters: the one definition of the settings, and what is derived from it (the
command line's options, the engine key, what results record). The Slicer module's parameter node
is checked against it on Slicer's own layer in test_SAMZeroShot.py."""

from dataclasses import fields

import pytest

from SAMZeroShotLib import cli, models, strategies
from SAMZeroShotLib.errors import SettingError
from SAMZeroShotLib.parameters import COMMANDS, Parameters, camel_case

SETTINGS = tuple(f.name for f in fields(Parameters))
REQUIRED = {
    "segment": ["--volume", "v.nrrd", "--prompts", "p.seg.nrrd", "--out", "o.seg.nrrd"],
    "evaluate": ["--out", "out"],
    "reproduce": ["--out", "out"],
}


def parse(command, *options):
    return cli.build_parser().parse_args([command, *REQUIRED[command], *options])


def option_strings(command):
    parser = cli.build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    return {option for action in subparser._actions for option in action.option_strings}


def a_value_other_than_the_default(name):
    default, choices = Parameters.default(name), Parameters.choices(name)
    if isinstance(default, bool):
        return not default
    if choices:
        return next(choice for choice in reversed(choices) if choice != default)
    return "/weights/sam_vit_b_01ec64.pth"


def test_camel_case_is_the_parameter_nodes_spelling():
    assert camel_case("fill_nonfinite") == "fillNonfinite"
    assert camel_case("model") == "model"
    assert camel_case("embedding_cache") == "embeddingCache"


def test_the_parameter_node_keeps_the_settings_under_their_established_names():
    # Saved scenes hold these names: renaming one loses the users' value of it.
    fields_of_node = Parameters.node_fields()
    assert fields_of_node["checkpointPath"] == "checkpoint"
    assert "slice_axis" not in fields_of_node.values()  # for scripts only
    for node, setting in fields_of_node.items():
        assert node in (camel_case(setting), "checkpointPath")


@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_line_defaults_are_the_library_defaults(command):
    args = parse(command)
    assert cli._parameters(args) == Parameters()


def test_the_options_keep_their_names_and_which_commands_offer_them():
    # The options as they were written by hand before they were generated from Parameters.
    every = {
        "--model",
        "--checkpoint",
        "--device",
        "--precision",
        "--backend",
        "--no-embedding-cache",
        "--fill-nonfinite",
    }
    prompts = {"--strategy", "--window", "--modality"}
    assert every | prompts | {"--propagate"} <= option_strings("segment")
    assert every | prompts <= option_strings("evaluate")
    assert "--propagate" not in option_strings("evaluate")  # it has --propagate-from
    assert every <= option_strings("reproduce")
    assert not (prompts | {"--propagate"}) & option_strings("reproduce")  # the paper's own


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_sets_its_setting(command):
    for name in Parameters.options(command):
        value = a_value_other_than_the_default(name)
        option = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv = [option if value else "--no-" + name.replace("_", "-")]
        else:
            argv = [option, value]
        given = cli._parameters(parse(command, *argv))
        assert getattr(given, name) == value, argv
        assert given == Parameters(**{name: value}), argv


def test_an_option_the_command_does_not_offer_keeps_its_default_or_the_commands_own():
    assert cli._parameters(parse("reproduce"), strategy="paper").strategy == "paper"
    assert cli._parameters(parse("evaluate")).propagate is False


def test_a_bad_name_is_refused_by_the_library_with_one_line():
    with pytest.raises(SettingError, match="Unknown backend 'magic'"):
        cli._parameters(parse("evaluate", "--backend", "magic"))


def test_the_help_of_an_option_is_the_settings_help_with_its_names_and_default():
    parser = cli.build_parser()
    text = parser._subparsers._group_actions[0].choices["evaluate"].format_help()
    flat = " ".join(text.split())
    for name in ("precision", "fill_nonfinite", "embedding_cache"):
        assert " ".join(Parameters.help(name).split()) in flat
    assert ", ".join(Parameters.choices("precision")) in flat


def test_every_setting_says_where_it_is_used_and_is_offered_somewhere():
    for name in SETTINGS:
        metadata = Parameters.__dataclass_fields__[name].metadata
        assert metadata["help"], name
        assert set(metadata["commands"]) <= set(COMMANDS), name
        offered = metadata["commands"] or metadata["node"]
        assert offered or name == "slice_axis", f"{name}: neither an option nor in the module"
        assert not metadata["summary"] or metadata["results"], f"{name}: summary needs results"


def test_the_engine_key_changes_with_the_settings_that_make_an_engine_only():
    base = Parameters()
    for name in SETTINGS:
        other = Parameters(**{name: a_value_other_than_the_default(name)})
        differs = other.engine_key() != base.engine_key()
        assert differs == (name in ("model", "checkpoint", "device", "precision", "backend")), name
    # auto and the device it resolves to are one engine.
    assert base.engine_key(device="cpu") == Parameters(device="cpu").engine_key()


def test_results_record_the_settings_under_the_names_earlier_folders_have():
    # A results folder is resumed only when its settings.json is equal: a recorded name renamed,
    # added or dropped makes every earlier folder refuse to resume.
    recorded = Parameters().results_settings()
    assert set(recorded) == {
        "model",
        "checkpoint_sha256",
        "strategy",
        "window",
        "modality",
        "precision",
        "fill_nonfinite",
    }
    assert recorded["strategy"] == strategies.resolve("auto", "litemedsam")[0] != "auto"
    assert recorded["checkpoint_sha256"] == models.checkpoint_sha256("litemedsam")
    assert Parameters(fill_nonfinite=True).results_settings()["fill_nonfinite"] is True
    # Where a case runs (device, backend) and the cache change no result.
    for name in ("device", "backend", "embedding_cache", "slice_axis"):
        other = Parameters(**{name: a_value_other_than_the_default(name)})
        assert other.results_settings() == recorded, name


def test_the_summary_shows_the_prompt_settings_as_recorded():
    settings = Parameters(strategy="box", window=Parameters.choices("window")[-1])
    recorded = settings.results_settings()
    shown = settings.summary_settings()
    assert set(shown) == {"model", "strategy", "window", "modality"}
    assert all(shown[key] == recorded[key] for key in shown)
