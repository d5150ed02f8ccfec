"""The `axiomrl` command itself: version, help, lazy imports, doctor."""

import json
import re

import pytest

from axiomrl_utils import __version__
from axiomrl_utils.commands.doctor import format_lines

from fake_runs import write_run

HEAVY = ("torch", "tensorboard", "matplotlib", "ray", "pandas", "scipy", "wandb", "plotly")

PROBE = """
import sys
from axiomrl_utils.commands.cli import main
try:
    code = main({argv!r})
except SystemExit as e:
    code = e.code
print("LOADED=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def _loaded(python, argv):
    proc = python("-c", PROBE.format(argv=argv, heavy=HEAVY))
    match = re.search(r"^LOADED=(.*)$", proc.stderr, re.M)
    assert match, proc.stderr
    return proc, [m for m in match.group(1).split(",") if m]


def test_version(cli):
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"axiomrl {__version__}"


def test_version_and_help_import_nothing_heavy(python):
    for argv in (["--version"], ["--help"], ["report", "--help"], ["leaderboard", "--help"]):
        proc, loaded = _loaded(python, argv)
        assert proc.returncode == 0 and loaded == [], (argv, loaded)
    proc, _ = _loaded(python, ["--help"])
    for command in ("report", "leaderboard", "plot", "doctor"):
        assert command in proc.stdout


def test_report_and_leaderboard_do_not_import_torch(python, tmp_path):
    for seed in (1, 2):
        write_run(tmp_path, seed=seed, train=[(10, 1.0 * seed)])
    proc, loaded = _loaded(python, ["report", str(tmp_path)])
    assert proc.returncode == 0 and loaded == []  # not even pandas or scipy
    proc, loaded = _loaded(python, ["leaderboard", str(tmp_path)])
    assert proc.returncode == 0 and "torch" not in loaded and "scipy" in loaded


def test_no_command_and_unknown_command(cli):
    proc = cli()
    assert proc.returncode == 2 and "COMMAND" in proc.stderr
    proc = cli("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


DOCTOR_KEYS = [
    "axiomrl", "python", "python_executable", "platform", "cpu_threads", "cpu_threads_usable", "numpy", "torch",
    "torch_threads", "cuda_available", "cuda_version", "device", "gymnasium", "gymnasium_cartpole", "tyro",
    "output_dir", "output_dir_writable", "mujoco", "mujoco_halfcheetah", "ale_py", "ale_roms", "wandb", "ray",
    "submitit", "plotly", "matplotlib", "moviepy", "onnxruntime", "core",
]


def test_doctor(cli, tmp_path):
    proc = cli("doctor", "--json", "--output-dir", str(tmp_path / "runs"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert list(report) == DOCTOR_KEYS
    assert report["core"] == "ok" and report["gymnasium_cartpole"] == "ok"
    assert report["output_dir_writable"].startswith("yes") and not (tmp_path / "runs").exists()
    assert isinstance(report["cuda_available"], bool) and report["cpu_threads"] >= 1
    for extra in ("mujoco", "ale_py", "wandb", "ray", "submitit", "plotly", "matplotlib", "moviepy", "onnxruntime"):
        assert report[extra]  # a version, or "not installed (pip install ...)": never a failure
    lines = format_lines(report).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == DOCTOR_KEYS


def test_doctor_fails_naming_the_check(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = cli("doctor", "--no-extras", "--output-dir", str(blocker / "runs"))
    assert proc.returncode == 1
    assert "core: failed: output_dir_writable" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the core does not work (output_dir_writable")


@pytest.mark.parametrize("command", ["report", "leaderboard", "plot", "doctor"])
def test_subcommand_help(cli, command):
    proc = cli(command, "--help")
    assert proc.returncode == 0 and f"usage: axiomrl {command}" in proc.stdout
