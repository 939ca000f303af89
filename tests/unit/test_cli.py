import pytest

from edgedistill.cli import main

COMMANDS = [["run"], ["distill"], ["export"], ["bench"], ["report"], ["targets", "list"], ["targets", "show"],
            ["bundle", "verify"], ["predict"], ["llm", "distill"], ["llm", "export"], ["llm", "bench"], ["generate"]]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_an_example(cmd, capsys):
    assert main(cmd + ["--help"]) == 0
    out = capsys.readouterr().out
    assert "Example" in out and "edgedistill" in out


def test_top_level_help_teaches_the_demo(capsys):
    assert main(["--help"]) == 0
    assert "edgedistill run" in capsys.readouterr().out


def test_targets_list_and_show(capsys):
    assert main(["targets", "list"]) == 0
    out = capsys.readouterr().out
    assert "phone" in out and "watch" in out and "tablet" in out
    assert main(["targets", "show", "phone"]) == 0
    out = capsys.readouterr().out
    assert "Snapdragon 8 Gen 3" in out and "p_cpu" in out and "4.4-10.2" in out and "R8:" in out


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["targets", "show", "toaster"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown target 'toaster'" in err
    assert main(["distill", str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["bundle", "verify", str(tmp_path)]) == 2
    assert "not a bundle" in capsys.readouterr().err


def test_usage_errors_exit_nonzero(capsys):
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["predict", "--bundle", ".", "--threads", "-3", "hi"], "--threads"),
    (["predict", "--bundle", ".", "--threads", "0", "hi"], "--threads"),
    (["llm", "bench", ".", "--threads", "1,-2"], "expected comma-separated positive integers"),
])
def test_thread_counts_must_be_positive(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_the_demo_time_in_the_help_is_the_measured_one(capsys):
    assert main(["--help"]) == 0
    assert "~6 min on 2 cores" in capsys.readouterr().out


def test_missing_training_stack_is_one_line_naming_the_extra(monkeypatch, capsys):
    from edgedistill import api

    def no_torch(*a, **k):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(api, "distill", no_torch)
    assert main(["distill"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedistill: error:") and "pip install 'edgedistill[full]'" in err and err.count("\n") == 1


def test_a_full_disk_anywhere_is_one_line(monkeypatch, capsys, tmp_path):
    import errno

    from edgedistill import api

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "export" / "model.onnx"))

    monkeypatch.setattr(api, "load_recipe", full)
    assert main(["distill"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and str(tmp_path / "export") in err
