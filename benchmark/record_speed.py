"""Recording speed and dataset sizes of `axiomrl eval --record` (CartPole and, with the atari extra, Pong).

    python benchmark/record_speed.py                     # prints a table, writes benchmark/results/record_speed.md

Each case trains a tiny real run (the policy's quality does not matter for speed), records its
episodes through `axiomrl_utils.commands.record.record` (the code `axiomrl eval --record` runs),
and reports steps/s of playing + recording (not writing) and the bytes each format took.
Pong's evaluation games are cut at 500 steps so the case stays short. Timings depend on the machine
and its load: they are printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHORT_PONG = (
    "import gymnasium as gym\nfrom axiomrl import ppo_atari\nfrom axiomrl.ppo_atari import *  # noqa\n\n\n"
    "def make_env(args, idx, evaluation=False, render_mode=None):\n"
    "    return lambda: gym.wrappers.TimeLimit(ppo_atari.make_env(args, idx, evaluation, render_mode)(), max_episode_steps=500)\n"
)


def measure(run_dir: Path, out: Path, episodes: int, checkpoint: str, script: Path | None = None) -> dict:
    from axiomrl_utils.commands.record import record
    from axiomrl_utils.commands.trained_run import open_run

    run = open_run(run_dir, checkpoint, script)
    start = time.perf_counter()
    result = record(run, out, episodes=episodes, fmt="both")
    total = time.perf_counter() - start
    return {
        "steps": result.steps,
        "play_sps": result.steps / result.seconds,
        "total_sps": result.steps / total,
        "minari_kib": result.sizes["minari"] / 1024,
        "parquet_kib": result.sizes["parquet"] / 1024,
        "not_stored": "; ".join(result.not_stored) or "-",
    }


def main() -> None:
    from axiomrl import ppo

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ppo.main(ppo.Args(output_dir=str(tmp / "cp"), total_timesteps=20000, num_envs=4, eval_every=0, checkpoint_every=0, progress=False))
        run_dir = next(p for p in (tmp / "cp").iterdir() if (p / "metadata.json").exists())
        rows.append(("CartPole-v1 (ppo, 10 episodes)", measure(run_dir, tmp / "cp-ds", 10, "latest")))
        if importlib.util.find_spec("ale_py") and importlib.util.find_spec("cv2"):
            from axiomrl import ppo_atari

            ppo_atari.main(ppo_atari.Args(env_id="ALE/Pong-v5", output_dir=str(tmp / "pong"), total_timesteps=32, num_envs=1,
                                          num_steps=32, num_minibatches=1, update_epochs=1, eval_every=0,
                                          checkpoint_every=32, progress=False))
            run_dir = next(p for p in (tmp / "pong").iterdir() if (p / "metadata.json").exists())
            script = tmp / "short_pong.py"
            script.write_text(SHORT_PONG)
            rows.append(("ALE/Pong-v5 (ppo_atari, 2 x 500 steps)", measure(run_dir, tmp / "pong-ds", 2, "latest", script)))
    header = "| case | steps | play+record steps/s | incl. writing steps/s | Minari KiB | parquet KiB | info fields not stored |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['steps']} | {r['play_sps']:,.0f} | {r['total_sps']:,.0f} | {r['minari_kib']:,.0f} | "
            f"{r['parquet_kib']:,.0f} | {r['not_stored']} |"
        )
    table = "\n".join(lines)
    print(table)
    out = REPO / "benchmark" / "results" / "record_speed.md"
    out.write_text(
        "# `axiomrl eval --record` speed and dataset sizes\n\n"
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        "made by `python benchmark/record_speed.py` (format `both`: Minari hdf5 uncompressed, parquet zstd).\n\n"
        + table + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
