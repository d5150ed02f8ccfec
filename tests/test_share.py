"""`axiomrl eval`, `export`, `pack`, `unpack` and --capture-video, through the real CLI on real ppo.py runs."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from axiomrl import ppo
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import load_args
from axiomrl_utils.evaluation import eval_seeds, make_eval_envs
from axiomrl_utils.jsonl import JsonlWriter, read_jsonl

from conftest import REPO, only_run, script_env, tiny_ppo_args, tree_snapshot

RETURN_LINE = re.compile(r"^return (-?[\d.]+) ± ([\d.]+) \| length ([\d.]+) ± ([\d.]+)$", re.M)


def axiomrl(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`axiomrl ARGS` in a fresh interpreter: `python -m axiomrl_utils.commands.cli` with the worktree on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-m", "axiomrl_utils.commands.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env=script_env(SDL_VIDEODRIVER="dummy", PYGAME_HIDE_SUPPORT_PROMPT="1", **env),
    )


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def run_copy(tiny_ppo_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny ppo.py run (1280 steps, evaluations of 3 episodes every 256)."""
    return Path(shutil.copytree(tiny_ppo_run, tmp_path / "runs" / tiny_ppo_run.name))


def manual_rows(run_dir: Path) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "eval_episodes.jsonl") if r["tag"] == "manual"]


def checkpoint_policy(run_dir: Path, name: str = "best"):
    """The checkpoint's policy as ppo.py itself rebuilds it, and a few real CartPole observations."""
    args = load_args(ppo.Args, run_dir)
    envs = make_eval_envs([ppo.make_env(args, 0, evaluation=True)])
    policy = ppo.load_policy(args, ckpt.load(run_dir / "checkpoints" / f"{name}.pt"), envs)
    obs, real = envs.reset(seed=3)[0], []
    for _ in range(200):
        real.append(obs)
        obs = envs.step(policy(torch.as_tensor(obs)).numpy())[0]
    envs.close()
    rng = np.random.default_rng(0)
    observations = np.concatenate([np.concatenate(real), rng.normal(scale=[1, 2, 0.2, 2], size=(800, 4))]).astype(np.float32)
    return args, policy, observations


# --------------------------------------------------------------------------------------------
# eval


def test_eval_best_and_latest(run_copy: Path) -> None:
    meta = json.loads((run_copy / "metadata.json").read_text())
    before = (run_copy / "eval_episodes.jsonl").read_bytes()
    training = read_jsonl(run_copy / "eval_episodes.jsonl")

    for name, step in (("best", meta["best_checkpoint"]["step"]), ("latest", 1280)):
        proc = axiomrl("eval", str(run_copy), "--checkpoint", name)
        assert proc.returncode == 0, proc.stderr
        rows = [r for r in manual_rows(run_copy) if r["checkpoint"] == f"checkpoints/{name}.pt"]
        assert len(rows) == 3 and {r["global_step"] for r in rows} == {step}
        assert [r["seed"] for r in rows] == eval_seeds(1, 3) and all(r["deterministic"] for r in rows)
        # the printed mean ± std is the mean ± std of the appended rows
        printed = RETURN_LINE.search(proc.stdout)
        assert printed, proc.stdout
        returns = [r["return"] for r in rows]
        assert float(printed.group(1)) == pytest.approx(np.mean(returns), abs=0.005)
        assert float(printed.group(2)) == pytest.approx(np.std(returns), abs=0.005)
        assert float(printed.group(3)) == pytest.approx(np.mean([r["length"] for r in rows]), abs=0.05)
        # the checkpoint on the run's eval seeds plays exactly the evaluation logged at its step
        logged = [r for r in training if r["global_step"] == step]
        assert returns == [r["return"] for r in logged] and [r["length"] for r in rows] == [r["length"] for r in logged]

    # other seeds, another episode count, a step file; earlier lines untouched (append-only)
    proc = axiomrl("eval", str(run_copy), "--checkpoint", "step_1024", "--episodes", "4", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in manual_rows(run_copy) if r["checkpoint"] == "checkpoints/step_1024.pt"]
    assert [r["seed"] for r in rows] == eval_seeds(5, 4) and {r["global_step"] for r in rows} == {1024}
    assert (run_copy / "eval_episodes.jsonl").read_bytes().startswith(before)
    assert len(read_jsonl(run_copy / "eval_episodes.jsonl")) == len(training) + 3 + 3 + 4


def test_eval_rows_survive_a_concurrent_writer_and_a_torn_line(tmp_path: Path) -> None:
    """The training process keeps eval_episodes.jsonl open in append mode; a killed one leaves a torn line."""
    from axiomrl_utils.commands.evaluate import append_jsonl_rows

    path = tmp_path / "eval_episodes.jsonl"
    writer = JsonlWriter(path)
    writer.write({"tag": "train", "n": 1})
    writer.flush()
    append_jsonl_rows(path, [{"tag": "manual", "n": 2}, {"tag": "manual", "n": 3}])
    writer.write({"tag": "train", "n": 4})
    writer.close()
    assert [r["n"] for r in read_jsonl(path)] == [1, 2, 3, 4]
    with open(path, "a") as f:
        f.write('{"tag": "train", "n": 5, "ret')  # kill -9 mid-line
    with pytest.warns(UserWarning, match="does not parse"):
        append_jsonl_rows(path, [{"tag": "manual", "n": 6}])
        rows = read_jsonl(path)
    assert [r["n"] for r in rows] == [1, 2, 3, 4, 6]


# --------------------------------------------------------------------------------------------
# export


def _standalone_actions(fmt: str, exported: Path, observations: np.ndarray, tmp_path: Path) -> np.ndarray:
    """Run the exported file in a fresh interpreter that imports no AxiomRL module."""
    np.save(tmp_path / "obs.npy", observations)
    load = {
        "torchscript": "import torch; out = torch.jit.load(PATH)(torch.from_numpy(obs)).numpy()",
        "onnx": "import onnxruntime as ort; out = ort.InferenceSession(PATH).run(None, {'obs': obs})[0]",
    }[fmt]
    code = (
        "import sys, numpy as np\n"
        f"PATH = {str(exported)!r}\nobs = np.load({str(tmp_path / 'obs.npy')!r})\n{load}\n"
        f"np.save({str(tmp_path / 'actions.npy')!r}, out)\n"
        "assert not [m for m in sys.modules if m.startswith('axiomrl')], 'imported axiomrl'\n"
    )
    env = {k: v for k, v in script_env().items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return np.load(tmp_path / "actions.npy")


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_gives_the_checkpoints_actions(run_copy: Path, tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module, reason="the export extra is not installed")
    meta = json.loads((run_copy / "metadata.json").read_text())
    proc = axiomrl("export", str(run_copy), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    exported = Path(proc.stdout.strip())
    suffix = {"torchscript": ".pt", "onnx": ".onnx"}[fmt]
    assert exported == run_copy / "exported" / f"policy_best_step{meta['best_checkpoint']['step']}{suffix}"
    _, policy, observations = checkpoint_policy(run_copy, "best")
    expected = policy(torch.as_tensor(observations)).numpy()
    got = _standalone_actions(fmt, exported, observations, tmp_path)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    assert len(set(expected.tolist())) == 2  # both actions occur: the comparison can fail

    snapshot = tree_snapshot(run_copy)
    one_line_error(axiomrl("export", str(run_copy), "--format", fmt), "already exists", "pass another --output")
    assert tree_snapshot(run_copy) == snapshot


NORMALISING_SCRIPT = '''
"""ppo.py's agent behind observation normalisation, as a script that normalises would load it."""
from axiomrl.ppo import Agent, Args, make_env  # noqa: F401
from axiomrl_utils.normalization import normalized_policy


def load_policy(args, checkpoint, envs):
    agent = Agent(envs)
    agent.load_state_dict(checkpoint["agent"])
    return normalized_policy(agent.eval().act, checkpoint["obs_mean"], checkpoint["obs_var"], clip=10.0)


if __name__ == "__main__":
    raise SystemExit("training is not part of this test script")
'''


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_bakes_in_observation_normalisation(run_copy: Path, tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module, reason="the export extra is not installed")
    from axiomrl_utils.normalization import normalized_policy

    script = tmp_path / "ppo_normalised.py"
    script.write_text(NORMALISING_SCRIPT)
    payload = ckpt.load(run_copy / "checkpoints" / "latest.pt")
    payload["obs_mean"] = np.array([0.5, -1.0, 0.05, 0.3])  # float64, as gymnasium's RunningMeanStd keeps them
    payload["obs_var"] = np.array([0.2, 4.0, 0.01, 3.0])
    ckpt.save_atomic(payload, run_copy / "checkpoints" / "latest.pt")

    out = tmp_path / f"p.{fmt}"
    proc = axiomrl("export", str(run_copy), "--checkpoint", "latest", "--format", fmt, "--script", str(script), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not (run_copy / "exported").exists()
    args, plain, observations = checkpoint_policy(run_copy, "latest")
    normalised = normalized_policy(plain, payload["obs_mean"], payload["obs_var"], clip=10.0)
    with torch.inference_mode():
        expected = normalised(torch.as_tensor(observations)).numpy()
        unnormalised = plain(torch.as_tensor(observations)).numpy()
    got = _standalone_actions(fmt, out, observations, tmp_path)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, unnormalised)  # the statistics are really in the file
    proc = axiomrl("eval", str(run_copy), "--checkpoint", "latest", "--script", str(script), "--no-append")
    assert proc.returncode == 0, proc.stderr
    assert not manual_rows(run_copy)


def test_policy_module_wraps_what_load_policy_may_return() -> None:
    """A module, a module's method, and a closure over a module and tensors all trace to the same actions."""
    from axiomrl_utils.normalization import normalized_policy
    from axiomrl_utils.policy import policy_module

    torch.manual_seed(0)
    envs = make_eval_envs([lambda: __import__("gymnasium").make("CartPole-v1")])
    agent = ppo.Agent(envs).eval()
    envs.close()
    mean, std = torch.tensor([0.1, 0.0, -0.02, 0.5]), torch.tensor([0.3, 1.5, 0.1, 2.0])

    def closure(x: torch.Tensor) -> torch.Tensor:
        return agent.act((x - mean) / std)

    obs = torch.randn(64, 4) * torch.tensor([1.0, 2.0, 0.2, 2.0])
    for policy in (agent.act, closure, normalized_policy(agent.act, mean, std**2, epsilon=0.0)):
        module = policy_module(policy)
        assert isinstance(module, torch.nn.Module)
        assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in agent.parameters())
        with torch.inference_mode():
            expected = policy(obs)
        traced = torch.jit.trace(module, obs[:2], check_trace=False)
        assert torch.equal(traced(obs), expected)


# --------------------------------------------------------------------------------------------
# pack / unpack


def test_pack_unpack_then_eval_and_report(run_copy: Path, tmp_path: Path) -> None:
    # as if packed on another machine: the script the metadata names does not exist here
    meta = json.loads((run_copy / "metadata.json").read_text())
    meta["script"] = "/home/someone-else/axiomrl/axiomrl/ppo.py"
    (run_copy / "metadata.json").write_text(json.dumps(meta, indent=2))
    (run_copy / "checkpoints" / ".latest.pt.1234.tmp").write_bytes(b"a save in progress")

    proc = axiomrl("pack", str(run_copy), "--output", str(tmp_path / "shared.zip"))
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(tmp_path / "shared.zip") as zf:
        names = set(zf.namelist())
    top = run_copy.name
    expected = {f"{top}/{p.relative_to(run_copy).as_posix()}" for p in run_copy.rglob("*") if p.is_file()}
    expected -= {f"{top}/checkpoints/{n}" for n in ("latest.pt", "step_1024.pt", "step_1280.pt", ".latest.pt.1234.tmp")}
    assert names == expected
    assert {f"{top}/metadata.json", f"{top}/config.yaml", f"{top}/checkpoints/best.pt", f"{top}/checkpoints/checkpoints.jsonl"} <= names
    assert any(n.startswith(f"{top}/tensorboard/events.out.tfevents") for n in names)

    for choice, checkpoints in (("latest", {"latest.pt"}), ("all", {"best.pt", "latest.pt", "step_1024.pt", "step_1280.pt"})):
        proc = axiomrl("pack", str(run_copy), "--checkpoints", choice, "--output", str(tmp_path / f"{choice}.zip"))
        assert proc.returncode == 0, proc.stderr
        with zipfile.ZipFile(tmp_path / f"{choice}.zip") as zf:
            packed = {Path(n).name for n in zf.namelist() if n.endswith(".pt")}
        assert packed == checkpoints

    other = tmp_path / "elsewhere" / "runs"
    proc = axiomrl("unpack", str(tmp_path / "shared.zip"), "--output-dir", str(other))
    assert proc.returncode == 0, proc.stderr
    unpacked = other / top
    assert Path(proc.stdout.strip()) == unpacked
    assert [p.name for p in other.iterdir()] == [top]  # no staging directory left behind
    new_meta = json.loads((unpacked / "metadata.json").read_text())
    assert new_meta["output_dir"] == str(unpacked.resolve())
    assert {k: v for k, v in new_meta.items() if k != "output_dir"} == {k: v for k, v in meta.items() if k != "output_dir"}
    for name in ("config.yaml", "metrics.jsonl", "eval_episodes.jsonl", "checkpoints/best.pt"):
        assert (unpacked / name).read_bytes() == (run_copy / name).read_bytes(), name

    proc = axiomrl("eval", str(unpacked))
    assert proc.returncode == 0, proc.stderr
    assert "note: the run's script /home/someone-else/axiomrl/axiomrl/ppo.py is gone; using" in proc.stderr
    rows = manual_rows(unpacked)
    logged = [r for r in read_jsonl(unpacked / "eval_episodes.jsonl") if r["tag"] == "train" and r["global_step"] == meta["best_checkpoint"]["step"]]
    assert [r["return"] for r in rows] == [r["return"] for r in logged]

    proc = axiomrl("report", str(other), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report) == 1 and report[0]["run_id"] == top and report[0]["status"] == "finished"
    assert report[0]["best_eval_return"] == pytest.approx(meta["best_checkpoint"]["value"])


# --------------------------------------------------------------------------------------------
# --capture-video


def assert_valid_mp4(path: Path, frames: int) -> None:
    """An MP4 (ISO base media `ftyp` box first) whose decoded frames are the episode, not blank."""
    import imageio.v2 as imageio

    data = path.read_bytes()
    assert len(data) > 1000 and data[4:8] == b"ftyp", path
    reader = imageio.get_reader(str(path), "ffmpeg")
    decoded = [frame for frame in reader]
    reader.close()
    assert len(decoded) == frames, (path, len(decoded), frames)
    assert decoded[0].shape == (400, 600, 3)  # CartPole's render size
    assert decoded[0].std() > 0 and not np.array_equal(decoded[0], decoded[-1])


def test_capture_video_in_training_and_in_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("moviepy", "pygame", "imageio_ffmpeg"):
        pytest.importorskip(module, reason="the video extra is not installed")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=512, eval_every=256, eval_episodes=2, capture_video=True))
    run_dir = only_run(tmp_path)
    rows = read_jsonl(run_dir / "eval_episodes.jsonl")
    for step in (256, 512):
        first = next(r for r in rows if r["global_step"] == step and r["episode"] == 0)
        assert_valid_mp4(run_dir / "videos" / f"eval_step{step:010d}.mp4", first["length"])

    proc = axiomrl("eval", str(run_dir), "--checkpoint", "latest", "--capture-video", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    video = Path(re.search(r"^video: (.+)$", proc.stderr, re.M).group(1))
    assert video.parent == run_dir / "videos" and video.name.startswith("manual_latest_step0000000512_seed3_")
    first = next(r for r in manual_rows(run_dir) if r["episode"] == 0)
    assert_valid_mp4(video, first["length"])
    assert "Hello from the pygame community" not in proc.stdout


# --------------------------------------------------------------------------------------------
# bad input: one sentence, non-zero exit, nothing changed


@pytest.mark.parametrize("command", [["eval"], ["export", "--format", "torchscript"], ["pack"]])
def test_a_path_that_is_no_run(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    snapshot = tree_snapshot(tmp_path)
    proc = axiomrl(command[0], str(tmp_path), *command[1:], cwd=tmp_path)
    one_line_error(proc, f"{tmp_path} is not an AxiomRL run (it has no metadata.json)", "pass a run directory")
    proc = axiomrl(command[0], str(tmp_path / "missing"), *command[1:], cwd=tmp_path)
    one_line_error(proc, "no such run directory")
    assert tree_snapshot(tmp_path) == snapshot


@pytest.mark.parametrize("command", [["eval"], ["export", "--format", "torchscript"]])
def test_a_checkpoint_that_does_not_exist(run_copy: Path, command: list[str]) -> None:
    snapshot = tree_snapshot(run_copy)
    proc = axiomrl(command[0], str(run_copy), "--checkpoint", "step_7", *command[1:])
    one_line_error(proc, "checkpoint 'step_7' does not exist", "it holds best, latest, step_1024, step_1280")
    assert tree_snapshot(run_copy) == snapshot


def test_pack_a_checkpoint_the_run_does_not_have(run_copy: Path, tmp_path: Path) -> None:
    (run_copy / "checkpoints" / "best.pt").unlink()
    snapshot = tree_snapshot(tmp_path)
    proc = axiomrl("pack", str(run_copy), "--output", str(tmp_path / "x.zip"))
    one_line_error(proc, "has no checkpoints/best.pt", "pass --checkpoints latest")
    assert tree_snapshot(tmp_path) == snapshot


def test_a_run_whose_script_moved(tmp_path: Path) -> None:
    """A run made by a script outside the package: once the script moves, eval says where it looked and how to point at it."""
    script = tmp_path / "lab" / "mysolver.py"
    script.parent.mkdir()
    shutil.copy(REPO / "axiomrl" / "ppo.py", script)
    spec = importlib.util.spec_from_file_location("mysolver_for_test", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(module.Args(output_dir=str(tmp_path / "runs"), total_timesteps=256, num_envs=2, num_steps=64,
                            eval_every=256, eval_episodes=2, checkpoint_every=256, progress=False))
    run_dir = only_run(tmp_path / "runs")
    moved = tmp_path / "archive" / "mysolver.py"
    moved.parent.mkdir()
    script.rename(moved)

    snapshot = tree_snapshot(tmp_path)
    for command in (["eval"], ["export", "--format", "torchscript"]):
        proc = axiomrl(command[0], str(run_dir), *command[1:])
        one_line_error(proc, f"the run's script {script} no longer exists", "has no mysolver.py", "pass its location with --script PATH")
    proc = axiomrl("eval", str(run_dir), "--script", str(tmp_path / "nowhere.py"))
    one_line_error(proc, "--script", "no such file")
    assert tree_snapshot(tmp_path) == snapshot

    proc = axiomrl("eval", str(run_dir), "--script", str(moved))
    assert proc.returncode == 0, proc.stderr
    assert len(manual_rows(run_dir)) == 2


def _zip(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


RUN_META = json.dumps({"schema_version": 1, "algo": "ppo", "env_id": "CartPole-v1", "seed": 1, "output_dir": "/x"}).encode()


@pytest.mark.parametrize(
    "entries, symlinks, message",
    [
        ({"notes/readme.txt": b"hi", "notes/data.csv": b"1,2"}, None, "is not an AxiomRL run"),
        ({"a/metadata.json": RUN_META, "b/metadata.json": RUN_META}, None, "is not an AxiomRL run"),
        ({"run/metadata.json": b'{"hello": 1}'}, None, "is not an AxiomRL run"),
        ({"run/metadata.json": RUN_META, "run/../../evil.txt": b"x"}, None, "'run/../../evil.txt' would be written outside the target"),
        ({"../evil/metadata.json": RUN_META}, None, "would be written outside the target directory (path traversal)"),
        ({"run/metadata.json": RUN_META, "ABSOLUTE": b"x"}, None, "is an absolute path"),
        ({"run/metadata.json": RUN_META}, {"run/checkpoints": "/etc"}, "'run/checkpoints' is a symbolic link"),
    ],
    ids=["no-metadata", "two-runs", "foreign-json", "dotdot-inside", "dotdot-top", "absolute", "symlink"],
)
def test_unpack_refuses_zips_that_are_no_run_or_escape(tmp_path: Path, entries: dict, symlinks: dict | None, message: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    entries = {(str(victim / "evil.txt") if k == "ABSOLUTE" else k): v for k, v in entries.items()}
    archive = _zip(tmp_path / "crafted.zip", entries, symlinks)
    (tmp_path / "runs").mkdir()
    snapshot = tree_snapshot(tmp_path)
    proc = axiomrl("unpack", str(archive), "--output-dir", str(tmp_path / "runs" / "deep"), cwd=tmp_path)
    one_line_error(proc, message)
    assert tree_snapshot(tmp_path) == snapshot
    assert not (tmp_path / "runs" / "deep").exists() and not list(tmp_path.rglob("evil*"))


def test_unpack_refuses_a_file_that_is_no_zip(tmp_path: Path) -> None:
    (tmp_path / "run.zip").write_text("this is not a zip")
    snapshot = tree_snapshot(tmp_path)
    one_line_error(axiomrl("unpack", str(tmp_path / "run.zip"), "--output-dir", str(tmp_path / "runs")), "is not a zip file")
    one_line_error(axiomrl("unpack", str(tmp_path / "nope.zip"), "--output-dir", str(tmp_path / "runs")), "no such file")
    assert tree_snapshot(tmp_path) == snapshot and not (tmp_path / "runs").exists()


def test_unpack_never_overwrites_a_run(run_copy: Path, tmp_path: Path) -> None:
    archive = tmp_path / "run.zip"
    assert axiomrl("pack", str(run_copy), "--output", str(archive)).returncode == 0
    (run_copy / "metrics.jsonl").write_text('{"global_step": 1}\n')  # the local copy has diverged
    snapshot = tree_snapshot(run_copy.parent)
    proc = axiomrl("unpack", str(archive), "--output-dir", str(run_copy.parent))
    one_line_error(proc, f"{run_copy} already exists", "--output-dir")
    assert tree_snapshot(run_copy.parent) == snapshot


def test_share_commands_start_without_torch() -> None:
    """pack and unpack are file operations; no subcommand's --help imports torch."""
    probe = (
        "import sys\nfrom axiomrl_utils.commands.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    for argv in (["eval", "--help"], ["export", "--help"], ["pack", "--help"], ["unpack", "--help"], ["unpack", "missing.zip"]):
        proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=script_env(), cwd=REPO, timeout=60)
        assert proc.stdout.strip().splitlines()[-1] == "False", (argv, proc.stdout, proc.stderr)


def test_unpack_of_a_damaged_zip_leaves_nothing(run_copy: Path, tmp_path: Path) -> None:
    archive = tmp_path / "run.zip"
    assert axiomrl("pack", str(run_copy), "--output", str(archive)).returncode == 0
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"{run_copy.name}/checkpoints/best.pt")  # stored, not deflated: its bytes are in the file
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # a bit flip on the way: the CRC no longer matches
    archive.write_bytes(bytes(data))
    out = tmp_path / "unpacked"
    proc = axiomrl("unpack", str(archive), "--output-dir", str(out))
    one_line_error(proc, "is damaged", "nothing was unpacked")
    assert out.is_dir() and not any(out.iterdir())  # no run, no staging directory
