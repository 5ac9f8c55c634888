"""One family of errors: what the user can fix is a UserError, and the command line maps it to
exit code 2 in one place."""

import pickle

import pytest

from SAMZeroShotLib import cli, errors

USER_ERRORS = [
    errors.SettingError,
    errors.InputError,
    errors.BadVoxels,
    errors.CheckpointError,
    errors.OutputError,
    errors.CompareError,
    errors.ClusterError,
]


@pytest.mark.parametrize("kind", USER_ERRORS)
def test_each_user_error_names_the_file_and_the_problem_and_survives_pickling(kind):
    error = kind("is damaged: download it again", "weights.pth")
    assert isinstance(error, errors.UserError)
    assert str(error) == "weights.pth: is damaged: download it again"
    back = pickle.loads(pickle.dumps(error))  # as a cluster's worker sends it back
    assert type(back) is kind and str(back) == str(error) and back.file == "weights.pth"


def test_a_case_error_keeps_its_path():
    error = errors.CaseError("images/a.png", "no mask with the same name")
    back = pickle.loads(pickle.dumps(error))
    assert back.path == "images/a.png" and str(back) == "images/a.png: no mask with the same name"
    assert isinstance(back, errors.UserError) and isinstance(back, ValueError)


def test_the_command_line_turns_any_user_error_into_one_line_and_exit_code_2(monkeypatch, capsys):
    def compare_that_fails(args):
        raise errors.CompareError("were made with other settings", "results/b")

    monkeypatch.setattr(cli, "run_compare", compare_that_fails)
    assert cli.main(["compare", "results/a", "results/b"]) == cli.EXIT_BAD_INPUT == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["samzeroshot compare: error: results/b: were made with other settings"]


def test_cancelled_is_not_a_user_error():
    assert not issubclass(errors.Cancelled, errors.UserError)
