"""Issue 23, parts 1-3: declared argument checks, observation-space fit, one writer per run."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from axiomrl_utils import UsageError
from axiomrl_utils.checks import check_args, declarations, flag, rejected_values, warn_suspicious
from axiomrl_utils.jsonl import read_jsonl

from conftest import REPO, only_run, run_script, script_env, tiny_ppo_args

SCRIPTS = [
    "ppo", "ppo_atari", "ppo_continuous_action", "dqn", "dqn_atari", "c51",
    "sac_continuous_action", "td3_continuous_action", "ddpg_continuous_action",
    "ppo_lstm", "ppo_atari_lstm", "rpo_continuous_action", "pqn", "c51_atari", "sac_atari", "rainbow_atari",
]
FIELDS = [(s, f.name) for s in SCRIPTS for f in dataclasses.fields(importlib.import_module(f"axiomrl.{s}").Args)]


@pytest.mark.parametrize("script, name", FIELDS, ids=[f"{s}.{n}" for s, n in FIELDS])
def test_every_field_declares_what_it_refuses(script: str, name: str) -> None:
    args_type = importlib.import_module(f"axiomrl.{script}").Args
    d = declarations(args_type)[name]
    if d.type is not bool and d.choices is None:
        assert d.checks, f"{script}.Args.{name} declares no check: add one as Annotated metadata (axiomrl_utils/checks.py)"
    values = rejected_values(args_type, name, args_type())
    assert values
    for value in values:
        with pytest.raises(UsageError) as err:
            check_args(dataclasses.replace(args_type(), **{name: value}))
        assert flag(name) in str(err.value) and "\n" not in str(err.value), (value, str(err.value))


def test_defaults_pass_and_help_keeps_docstrings() -> None:
    from axiomrl import ppo

    for script in SCRIPTS:
        check_args(importlib.import_module(f"axiomrl.{script}").Args())
    proc = run_script("ppo.py", "--help")
    assert "the discount factor gamma" in proc.stdout and "--learning-rate FLOAT" in proc.stdout
    assert all("--" + f.name.replace("_", "-") in proc.stdout for f in dataclasses.fields(ppo.Args))


@pytest.mark.parametrize(
    "script, overrides, message",
    [
        ("ppo", {"learning_rate": math.nan}, "--learning-rate must be a finite number (got nan)"),
        ("ppo", {"gamma": 1.5}, "--gamma must be in [0, 1] (got 1.5)"),
        ("dqn", {"start_e": 2.0}, "--start-e must be in [0, 1] (got 2.0)"),
        ("ppo", {"seed": -3}, "--seed must be in [0, 4294967296) (got -3)"),
        ("ppo", {"best_metric": "nosuch/metric"}, "--best-metric nosuch/metric is not a metric ppo.py logs"),
        ("ppo", {"env_id": "ALE/Pong-v5", "dry_run": True}, "ppo.py feeds flat vector observations to an MLP but ALE/Pong-v5 has image observations"),
        ("sac_continuous_action", {"env_id": "FrozenLake-v1"}, "needs a continuous (Box) action space"),
    ],
)
def test_measured_bad_inputs_create_nothing(tmp_path: Path, script: str, overrides: dict, message: str) -> None:
    module = importlib.import_module(f"axiomrl.{script}")
    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        module.main(module.Args(output_dir=str(out), total_timesteps=1280, progress=False, **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_pixels_into_an_mlp_script_names_the_atari_scripts() -> None:
    pytest.importorskip("ale_py")
    from axiomrl_utils.envs import require_env

    with pytest.raises(UsageError, match="ALE/Pong-v5 has image observations .*; use ppo_atari.py or dqn_atari.py"):
        require_env("ALE/Pong-v5", "ppo.py", "discrete")


def test_nan_from_the_shell_is_one_line(tmp_path: Path) -> None:
    proc = run_script("ppo.py", "--learning-rate", "nan", "--output-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: --learning-rate must be a finite number (got nan); pass a value such as 0.00025"]
    assert not any(tmp_path.iterdir())


def test_suspicious_settings_warn_once(capsys: pytest.CaptureFixture) -> None:
    from axiomrl import dqn

    for _ in range(2):
        args = dqn.Args(total_timesteps=1234, learning_starts=5000, eval_every=0)
        check_args(args)
        warn_suspicious(args)
    assert capsys.readouterr().err.splitlines() == [
        "warning: --learning-starts 5000 is not below --total-timesteps 1234: the run never learns"
    ]


def test_underscore_flags_reach_the_resume_filters(tmp_path: Path) -> None:
    from axiomrl import ppo
    from axiomrl_utils.args import parse_args

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metadata.json").write_text(json.dumps({"algo": "ppo", "env_id": "CartPole-v1", "seed": 1}))
    with pytest.raises(UsageError, match="holds no ppo MountainCar-v0 run"):
        parse_args(ppo.Args, ppo.__file__, ["--resume", str(tmp_path), "--env_id", "MountainCar-v0"])


@pytest.fixture()
def paused_run(tmp_path: Path) -> Path:
    from axiomrl import ppo

    ppo.main(tiny_ppo_args(tmp_path, pause_at_step=640))
    return only_run(tmp_path)


def test_refused_config_changes_leave_config_and_metadata_byte_identical(paused_run: Path) -> None:
    from axiomrl import ppo

    before = {n: (paused_run / n).read_bytes() for n in ("config.yaml", "metadata.json")}
    for change in ({"num_steps": 32}, {"num_envs": 4}, {"env_id": "Acrobot-v1"}):
        with pytest.raises(UsageError, match=f"a resume cannot change {next(iter(change))}"):
            ppo.main(tiny_ppo_args(paused_run.parent, resume=str(paused_run), allow_config_change=list(change), **change))
    # a change the drift guard accepts but the checkpoint cannot take: found when it loads, before any write
    with pytest.raises(UsageError, match="the checkpoint does not fit the changed"):
        _resume_with_a_wider_network(paused_run)
    assert {n: (paused_run / n).read_bytes() for n in before} == before


def _resume_with_a_wider_network(run_dir: Path) -> None:
    from axiomrl import ppo

    original = ppo.Agent.__init__

    def wider(self, envs):  # as if a hyperparameter had resized the network
        original(self, envs)
        self.actor[0] = ppo.nn.Linear(self.actor[0].in_features, 65)

    ppo.Agent.__init__ = wider
    try:
        ppo.main(tiny_ppo_args(run_dir.parent, resume=str(run_dir), learning_rate=1e-3, allow_config_change=["learning_rate"]))
    finally:
        ppo.Agent.__init__ = original


def test_resume_drops_stale_temp_files_and_keys_the_script_lost(paused_run: Path, capsys: pytest.CaptureFixture) -> None:
    from axiomrl import ppo

    config = json.loads((paused_run / "config.yaml").read_text())
    (paused_run / "config.yaml").write_text(json.dumps({**config, "old_flag": 3}))
    stale = [paused_run / ".metrics.jsonl.k2j_x9ab.tmp", paused_run / "checkpoints" / ".latest.pt.4242.tmp"]
    for path in stale:
        path.write_bytes(b"x" * 1000)
    (paused_run / "notes.tmp").write_text("not ours")
    ppo.main(tiny_ppo_args(paused_run.parent, resume=str(paused_run)))
    assert not any(p.exists() for p in stale) and (paused_run / "notes.tmp").exists()
    assert "warning: config.yaml sets old_flag, which this script no longer has; resuming without them" in capsys.readouterr().err
    assert json.loads((paused_run / "metadata.json").read_text())["status"] == "finished"
    assert "old_flag" not in json.loads((paused_run / "config.yaml").read_text())


def test_a_held_run_refuses_a_second_writer(paused_run: Path) -> None:
    from axiomrl import ppo
    from axiomrl_utils.run.lock import RunLock

    with RunLock.acquire(paused_run):
        for extra in ({}, {"dry_run": True}):
            with pytest.raises(UsageError, match="is still being trained by another process; stop it first"):
                ppo.main(tiny_ppo_args(paused_run.parent, resume=str(paused_run), **extra))


DRIVER = """
import pathlib, sys, time
from axiomrl import ppo
from axiomrl_utils.args import parse_args
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.002)
ppo.main(parse_args(ppo.Args, ppo.__file__, sys.argv[2:]))
"""


def test_two_resumes_started_together_one_trains(paused_run: Path) -> None:
    go = paused_run.parent / "go"
    argv = ["--resume", str(paused_run), "--total-timesteps", "3840", "--no-progress"]
    procs = [
        subprocess.Popen([sys.executable, "-c", DRIVER, str(go), *argv], cwd=REPO, env=script_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(4)  # both past their imports, waiting at the barrier
    go.touch()
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    refused = next(err for rc, err in results if rc == 1)
    assert refused.strip().splitlines()[-1].startswith(f"error: {paused_run} is still being trained by"), refused
    steps = [row["global_step"] for row in read_jsonl(paused_run / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 3840
    assert len(json.loads((paused_run / "metadata.json").read_text())["resumes"]) == 1
