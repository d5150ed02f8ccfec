"""--pause-at-step belongs to one session: a resume does not inherit it from config.yaml."""

from __future__ import annotations

from pathlib import Path

from axiomrl import ppo
from axiomrl_utils.args import parse_args

from conftest import only_run, tiny_ppo_args


def test_resume_does_not_inherit_pause_at_step(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=512, eval_every=0, pause_at_step=256))
    run_dir = only_run(tmp_path)
    resumed = parse_args(ppo.Args, ppo.__file__, ["--resume", str(run_dir)])
    assert resumed.pause_at_step is None and resumed.num_steps == 64  # the rest comes from config.yaml
    again = parse_args(ppo.Args, ppo.__file__, ["--resume", str(run_dir), "--pause-at-step", "384"])
    assert again.pause_at_step == 384
