"""`axiomrl pack` and `axiomrl unpack`: a run directory as one zip to share, and back, safely.

    axiomrl pack runs/ppo__CartPole-v1__seed1__... --output run.zip
    axiomrl unpack run.zip --output-dir runs

Nothing heavy (numpy, torch) is imported here, so `axiomrl pack --help` starts fast.
Docs: docs/eval-export-share.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from axiomrl_utils import UsageError
from axiomrl_utils.commands.trained_run import available_checkpoints, resolve_run
from axiomrl_utils.host import nearest_existing_dir, run_process_alive
from axiomrl_utils.replay_store import DIRECTORY as REPLAY_DIRECTORY
from axiomrl_utils.rundir import METADATA_FILE, metadata_problem

PACK_CHOICES = ("best", "latest", "all")
# Already compressed: deflating them costs time and saves nothing.
STORED_SUFFIXES = frozenset({".pt", ".pth", ".mp4", ".png", ".jpg", ".gif", ".zip", ".gz", ".onnx", ".npz"})


# --------------------------------------------------------------------------------------------
# pack


@dataclass
class PackResult:
    path: Path
    files: int
    size_bytes: int  # uncompressed total of the files packed
    checkpoints: list[str]


def _is_temp(name: str) -> bool:
    """Temp files of atomic writes in progress (`.name.XXXX.tmp`, `.name.tmp.mp4`): never part of a pack."""
    return name.startswith(".") and (".tmp" in name)


def pack_files(run_dir: Path, checkpoints: str) -> tuple[list[Path], list[str]]:
    """The files of a run that a pack holds (relative paths) and the checkpoint files among them.

    Everything in the run directory except symlinks, temp files of writes in progress, and the
    checkpoint files not chosen: `best` (best.pt), `latest` (latest.pt) or `all` (every .pt), with
    the replay-store chunk files the chosen checkpoint names (so `latest` packs resume exactly).
    checkpoints/checkpoints.jsonl, the index, is always included.
    """
    if checkpoints not in PACK_CHOICES:
        raise UsageError(f"--checkpoints {checkpoints!r} is not one of {', '.join(PACK_CHOICES)}; pass one of those")
    checkpoint_dir = run_dir / "checkpoints"
    if checkpoints != "all" and not (checkpoint_dir / f"{checkpoints}.pt").is_file():
        held = available_checkpoints(run_dir)
        fix = f"pass --checkpoints {'latest' if 'latest' in held else 'all'}" if held else "pack it with --checkpoints all (it has none)"
        raise UsageError(f"{run_dir} has no checkpoints/{checkpoints}.pt; {fix}")
    replay_files = None if checkpoints == "all" else _replay_files(checkpoint_dir / f"{checkpoints}.pt")
    files, chosen = [], []
    for root, dirs, names in os.walk(run_dir, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            rel = path.relative_to(run_dir)
            if path.is_symlink() or _is_temp(name) or not path.is_file():
                continue
            if rel.parent == Path("checkpoints") and rel.suffix == ".pt":
                if checkpoints != "all" and rel.stem != checkpoints:
                    continue
                chosen.append(rel.as_posix())
            if rel.parts[:2] == ("checkpoints", REPLAY_DIRECTORY) and replay_files is not None and rel not in replay_files:
                continue  # replay chunks only the checkpoints left out name
            files.append(rel)
    return files, chosen


def _replay_files(checkpoint: Path) -> set[Path]:
    """The replay-store chunk files (relative to the run) that `checkpoint` names."""
    if not (checkpoint.parent / REPLAY_DIRECTORY).is_dir():
        return set()
    from axiomrl_utils.checkpoint import CheckpointError, load
    from axiomrl_utils.replay_store import is_manifest

    try:
        payload = load(checkpoint, replay=False)
    except CheckpointError:
        return set()
    return {
        Path("checkpoints", m["directory"], c[0])
        for m in payload.values() if is_manifest(m)
        for a in m["arrays"].values() for c in a["chunks"]
    }


def pack(path: str | os.PathLike, checkpoints: str = "best", output: Optional[str | os.PathLike] = None) -> PackResult:
    """Zip a run directory for sharing; returns what was written.

    The zip holds one top-level directory, the run's own name, with metadata, config, logs,
    TensorBoard, videos, plots and exports as they are and the chosen checkpoints. It is written
    to a temp file next to `output` (default `./<run_id>.zip`) and renamed into place, so the
    output is either absent or complete. An existing output file is never overwritten.
    """
    from axiomrl_utils.jsonl import atomic_file

    run_dir, _ = resolve_run(path)
    files, chosen = pack_files(run_dir, checkpoints)
    target = Path(output).expanduser() if output is not None else Path.cwd() / f"{run_dir.name}.zip"
    if target.exists():
        raise UsageError(f"{target} already exists; pass another --output or remove it first")
    if not target.parent.is_dir():
        raise UsageError(f"--output {target}: the directory {target.parent} does not exist; create it or write elsewhere")
    if target.resolve().is_relative_to(run_dir):
        raise UsageError(f"--output {target} is inside the run directory it packs; write the zip elsewhere")
    total = 0
    with atomic_file(target, binary=True, durable=True) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for rel in files:
                source = run_dir / rel
                compress = zipfile.ZIP_STORED if rel.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                try:
                    zf.write(source, f"{run_dir.name}/{rel.as_posix()}", compress_type=compress)
                except FileNotFoundError:  # a training run pruned a step file meanwhile
                    continue
                total += source.stat().st_size
    return PackResult(target, len(files), total, chosen)


# --------------------------------------------------------------------------------------------
# unpack


def _unsafe_reason(info: zipfile.ZipInfo) -> Optional[str]:
    """Why an entry must not be extracted, or None: absolute paths, `..`, backslashes, symlinks, devices."""
    name = info.filename
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or name.startswith("\\"):
        return "is an absolute path"
    if "\\" in name:
        return "uses backslashes, which could name a path outside the target on Windows"
    if ".." in PurePosixPath(name).parts:
        return "would be written outside the target directory (path traversal)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # unix attributes: refuse anything but regular files and directories
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            return "is a symbolic link"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "is not a regular file"
    return None


NAME_MAX = 255  # bytes per path component on Linux, macOS and Windows file systems


def _layout_problem(infos: list[zipfile.ZipInfo]) -> Optional[str]:
    """Why the entries cannot all be extracted side by side, or None: two entries naming the same path
    (`a/b` and `a/./b` too), a file that another entry needs as a directory, a name component too long."""
    files: dict[tuple[str, ...], str] = {}
    dirs: dict[tuple[str, ...], str] = {}
    for info in infos:
        parts = tuple(p for p in PurePosixPath(info.filename).parts if p != ".")
        long = next((p for p in parts if len(p.encode("utf-8", "surrogateescape")) > NAME_MAX), None)
        if long is not None:
            return f"its entry {info.filename[:80]!r} has a name over {NAME_MAX} bytes, which no file system stores"
        if info.is_dir():
            dirs.setdefault(parts, info.filename)
        elif parts in files:
            return f"it holds {info.filename!r} twice"
        else:
            files[parts] = info.filename
        for i in range(1, len(parts)):  # every parent must be a directory
            dirs.setdefault(parts[:i], info.filename)
    clash = next((name for parts, name in files.items() if parts in dirs), None)
    if clash is not None:
        return f"its entry {clash!r} is a file, but another entry needs it as a directory"
    return None


def inspect_zip(zip_path: Path) -> tuple[str, dict[str, Any], list[zipfile.ZipInfo]]:
    """Validate a zip as an AxiomRL run pack before anything is extracted: (run name, metadata, entries).

    Refuses (UsageError) a file that is not a zip, any entry that could land outside the target,
    duplicate entries, and a zip that is not exactly one run directory with a metadata.json.
    """
    import json

    if not zip_path.is_file():
        raise UsageError(f"{zip_path}: no such file; pass a zip written by `axiomrl pack`")
    if not zipfile.is_zipfile(zip_path):
        raise UsageError(f"{zip_path} is not a zip file; pass a zip written by `axiomrl pack`")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            for info in infos:
                reason = _unsafe_reason(info)
                if reason:
                    raise UsageError(
                        f"refusing {zip_path}: its entry {info.filename!r} {reason}; "
                        "only unpack zips written by `axiomrl pack` (nothing was extracted)"
                    )
            problem = _layout_problem(infos)
            if problem:
                raise UsageError(f"refusing {zip_path}: {problem}; only unpack zips written by `axiomrl pack` (nothing was extracted)")
            tops = {PurePosixPath(n).parts[0] for n in names if PurePosixPath(n).parts}
            top = next(iter(tops)) if len(tops) == 1 else None
            meta_name = f"{top}/{METADATA_FILE}"
            if top is None or meta_name not in names:
                raise UsageError(
                    f"{zip_path} is not an AxiomRL run (no single top-level run directory with a {METADATA_FILE}); "
                    "pass a zip written by `axiomrl pack`"
                )
            try:
                metadata = json.loads(zf.read(meta_name))
            except ValueError:
                metadata = None
    except zipfile.BadZipFile as e:
        raise UsageError(f"{zip_path} is a damaged zip ({e}); pack the run again") from None
    if not isinstance(metadata, dict) or "algo" not in metadata or "schema_version" not in metadata:
        raise UsageError(f"{zip_path} is not an AxiomRL run ({meta_name} is not run metadata); pass a zip written by `axiomrl pack`")
    problem = metadata_problem(metadata)
    if problem:
        raise UsageError(f"refusing {zip_path}: its {meta_name} {problem}; pack the run again (nothing was extracted)")
    return top, metadata, infos


def unpack(zip_path: str | os.PathLike, output_dir: str | os.PathLike = "runs") -> Path:
    """Extract a packed run into `output_dir/<run name>` and return that directory.

    Every entry is checked first (see `inspect_zip`); an existing run directory is never
    overwritten. The files are extracted into a hidden temp directory next to the target, the
    metadata's `output_dir` is set to the new location, and the directory is renamed into place,
    so readers (`axiomrl report runs/`) see no run or the whole run.
    """
    from axiomrl_utils.jsonl import write_json_atomic

    zip_path = Path(zip_path).expanduser()
    top, metadata, infos = inspect_zip(zip_path)
    root = Path(output_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--output-dir {output_dir} is a file; pass a directory")
    target = root / top
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists; unpack into another --output-dir, or remove that run first")
    needed = sum(info.file_size for info in infos)
    probe = root if root.exists() else nearest_existing_dir(root.resolve())
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise UsageError(f"{zip_path} unpacks to {needed / 1e6:,.0f} MB but {probe} has {free / 1e6:,.0f} MB free; free some space")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --output-dir {output_dir} ({e.strerror or e}); pass a writable directory") from None
    staging = root / f".{top}.unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        staging_resolved = staging.resolve()
        with zipfile.ZipFile(zip_path) as zf:
            for info in infos:
                parts = PurePosixPath(info.filename).parts[1:]
                if not parts:
                    continue
                dest = staging.joinpath(*parts)
                if not dest.resolve().is_relative_to(staging_resolved):  # belt and braces after inspect_zip
                    raise UsageError(f"refusing {zip_path}: {info.filename!r} would be written outside the target")
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                if parts == (METADATA_FILE,):
                    continue  # written last, with the new location
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        metadata["output_dir"] = str(target.resolve())
        write_json_atomic(staging / METADATA_FILE, metadata)
        if target.exists():  # someone unpacked the same run meanwhile
            raise UsageError(f"{target} already exists; unpack into another --output-dir, or remove that run first")
        os.rename(staging, target)
    except zipfile.BadZipFile as e:  # a CRC error or a truncated entry found while extracting
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"{zip_path} is damaged ({e}); nothing was unpacked, pack the run again") from None
    except OSError as e:  # what inspect_zip cannot foresee: a full disk, a file system's own limits
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"unpacking {zip_path} into {root} failed ({e.strerror or e}); nothing was unpacked, "
                         "fix that and unpack again") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------------------------
# The subcommands (wired in axiomrl_utils/commands/cli.py)


def add_pack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run directory")
    parser.add_argument("--checkpoints", default="best", choices=PACK_CHOICES, help="which checkpoints to include (default: best)")
    parser.add_argument("--output", metavar="FILE.zip", help="the zip to write (default: ./<run_id>.zip); never overwritten")


def run_pack(args: argparse.Namespace) -> int:
    _, meta = resolve_run(args.run)
    if meta.get("status") == "running" and run_process_alive(meta):
        print(f"note: the run is still training (process {meta['pid']}); the zip is a snapshot of it now", file=sys.stderr)
    result = pack(args.run, args.checkpoints, args.output)
    print(result.path)
    included = ", ".join(result.checkpoints) or "no checkpoint"
    print(
        f"packed {result.files} files ({result.size_bytes / 1e6:,.1f} MB before compression; {included}) "
        f"into {result.path.stat().st_size / 1e6:,.1f} MB",
        file=sys.stderr,
    )
    return 0


def add_unpack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", metavar="FILE.zip", help="a zip written by `axiomrl pack`")
    parser.add_argument("--output-dir", default="runs", help="the directory to unpack the run into (default: runs)")


def run_unpack(args: argparse.Namespace) -> int:
    target = unpack(args.zip, args.output_dir)
    print(target)
    print(f"unpacked into {target}; evaluate it with `axiomrl eval {target}`", file=sys.stderr)
    return 0
