"""Summarise a py-spy profile of a script: top functions (self and inclusive) and top lines of `main`.

    OMP_NUM_THREADS=1 py-spy record --format raw -r 100 -o /tmp/ppo.txt -- \\
        python axiomrl/ppo.py --total-timesteps 100000 --no-progress
    python benchmark/profile_summary.py /tmp/ppo.txt                  # the script is guessed from the stacks
    python benchmark/profile_summary.py /tmp/ppo.txt --script axiomrl/ppo.py --top 15
    git show 3ebc00f:axiomrl/ppo.py > /tmp/old.py      # line texts from the version that was profiled
    python benchmark/profile_summary.py /tmp/old.txt --source /tmp/old.py

`--format raw` writes one line per distinct stack ("frame;frame;... count"). Percentages are of
all samples; "lines of main" attributes every sample taken inside the script's `main` to the line
of `main` it was on (so a line's share includes everything it calls), which is the view that
says which statement of the training loop costs what. py-spy also samples threads that are
waiting (e.g. TensorBoard's writer thread in `Condition.wait`); those show up as such.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: Path) -> list[tuple[list[tuple[str, str, int]], int]]:
    """[(frames outermost first as (function, file, line), samples)] of a py-spy raw file."""
    stacks = []
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        if not stack:  # a sample without Python frames (native code of a thread py-spy cannot name)
            stacks.append(([("(no Python frames)", "", 0)], int(count)))
            continue
        frames = []
        for frame in stack.split(";"):
            m = FRAME.match(frame)
            if m:
                frames.append((m["name"], m["file"].split("site-packages/")[-1], int(m["line"] or 0)))
            else:
                frames.append((frame, "", 0))
        stacks.append((frames, int(count)))
    return stacks


def summary(stacks: list[tuple[list[tuple[str, str, int]], int]], script: str | None, top: int,
            source_file: str | None = None) -> str:
    total = sum(n for _, n in stacks) or 1
    own, inclusive, lines = collections.Counter(), collections.Counter(), collections.Counter()
    if script is None:  # the file whose `main` appears in the most samples
        mains = collections.Counter(f for frames, n in stacks for name, f, _ in frames[:3] if name == "main" for _ in range(n))
        script = mains.most_common(1)[0][0] if mains else ""
    in_main = 0
    for frames, n in stacks:
        label = lambda fr: f"{fr[0]} ({fr[1]})"  # noqa: E731
        own[label(frames[-1])] += n
        for key in {label(fr) for fr in frames}:
            inclusive[key] += n
        main = next((fr for fr in frames if fr[0] == "main" and fr[1].endswith(Path(script).name)), None)
        if main is not None:
            in_main += n
            lines[main[2]] += n
    source_file = source_file or script
    source = Path(source_file).read_text().splitlines() if source_file and Path(source_file).is_file() else []

    def pct(n: int, of: int = total) -> str:
        return f"{100 * n / max(of, 1):5.1f}%"

    out = [f"{total} samples; {pct(in_main)} inside {script}:main", "", "self time (top of the stack):"]
    out += [f"  {pct(n)}  {k}" for k, n in own.most_common(top)]
    out += ["", "inclusive (anywhere on the stack):"]
    out += [f"  {pct(n)}  {k}" for k, n in inclusive.most_common(top)]
    out += ["", "lines of main (share of the samples inside main):"]
    for line, n in lines.most_common(top):
        text = source[line - 1].strip()[:90] if 0 < line <= len(source) else ""
        out.append(f"  {pct(n, in_main)}  {Path(script).name}:{line}  {text}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="a py-spy --format raw file")
    parser.add_argument("--script", help="the profiled script (default: the file whose main() has the most samples)")
    parser.add_argument("--source", help="the script as it was when profiled, for the line texts (default: --script)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summary(parse(args.profile), args.script, args.top, args.source))


if __name__ == "__main__":
    main()
