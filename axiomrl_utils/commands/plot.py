"""Learning curves: `axiomrl plot`.

One figure per env with one line per algo: the mean over seeds and a shaded band (95% bootstrap
CI of that mean, or ± one std), over environment steps. Seeds log at different steps, so each
seed's curve is interpolated onto a common grid of steps first. Written as PNG (matplotlib) and,
when plotly is installed, one interactive HTML page holding every env.

Runs are found and filtered by `axiomrl_utils.commands.runs`; the curves come from the run's jsonl logs.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.jsonl import read_jsonl, write_text_atomic
from axiomrl_utils.commands.compare import add_score_arguments
from axiomrl_utils.commands.figures import band_trace, algo_colors, figure_divs, html_page
from axiomrl_utils.commands.output import note, warn
from axiomrl_utils.commands.runs import RunRecord, add_run_selection_arguments, selected_runs
from axiomrl_utils.commands.stats import bootstrap_ci

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

GRID_POINTS = 200
BAND_RESAMPLES = 1000
BANDS = {"ci": "shaded: 95% bootstrap CI of the mean", "std": "shaded: mean ± 1 std"}


@dataclass(frozen=True)
class Curve:
    """One run's curve: steps (increasing) and values."""

    steps: "np.ndarray"
    values: "np.ndarray"


@dataclass(frozen=True)
class SeedAggregate:
    """Curves of several seeds on a common step grid: mean, band (NaN where undefined), seed count."""

    grid: "np.ndarray"
    mean: "np.ndarray"
    low: "np.ndarray"
    high: "np.ndarray"
    seeds: int


def metric_label(metric: str, smooth: int) -> str:
    """The y-axis label for `metric`."""
    if metric == "train":
        return f"episodic return (training, mean of last {smooth} episodes)"
    if metric == "eval":
        return "evaluation return (mean over episodes)"
    return metric


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "metric"


def _frame(path: Path, columns: Sequence[str]) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame.from_records(read_jsonl(path))
    if frame.empty or any(c not in frame for c in columns):
        return pd.DataFrame(columns=list(columns))
    return frame


def run_curve(run: RunRecord, metric: str, smooth: int = 100) -> Curve | None:
    """`run`'s curve of `metric`, None when its logs hold no such data.

    `train`: training episode returns (train_episodes.jsonl), each point the mean of the last
    `smooth` episodes, so the curve ends at the report's train_return. `eval`: the mean return
    of each training-time evaluation (eval_episodes.jsonl). Anything else: that metrics.jsonl key.
    """
    import pandas as pd

    if metric == "train":
        frame = _frame(run.path / "train_episodes.jsonl", ["global_step", "return"])
        value_col = "return"
    elif metric == "eval":
        frame = _frame(run.path / "eval_episodes.jsonl", ["global_step", "return"])
        if "tag" in frame:
            frame = frame[frame["tag"].isna() | (frame["tag"] == "train")]
        value_col = "return"
    else:
        frame = _frame(run.path / "metrics.jsonl", ["global_step", metric])
        value_col = metric
    frame = frame[["global_step", value_col]].apply(pd.to_numeric, errors="coerce").dropna()
    if frame.empty:
        return None
    if metric == "train":
        frame[value_col] = frame[value_col].rolling(smooth, min_periods=1).mean()
        per_step = frame.groupby("global_step", sort=True)[value_col].last()
    else:
        per_step = frame.groupby("global_step", sort=True)[value_col].mean()
    return Curve(per_step.index.to_numpy(dtype=float), per_step.to_numpy(dtype=float))


def aggregate_curves(curves: Sequence[Curve], band: str = "ci", points: int = GRID_POINTS) -> SeedAggregate:
    """Interpolate `curves` onto a common grid (numpy) and aggregate across seeds.

    The grid spans the union of the curves' steps; a seed contributes only inside its own range
    (no extrapolation), so the mean is over the seeds present at each step. The band needs at
    least 2 seeds present at a step; both use exactly the seeds present there.
    """
    import numpy as np

    start = min(c.steps[0] for c in curves)
    end = max(c.steps[-1] for c in curves)
    grid = np.linspace(start, end, points) if end > start else np.array([start])
    values = np.vstack([np.interp(grid, c.steps, c.values, left=np.nan, right=np.nan) for c in curves])
    count = np.sum(~np.isnan(values), axis=0)
    low = np.full(grid.shape, np.nan)
    high = np.full(grid.shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns between disjoint seeds
        mean = np.nanmean(values, axis=0)
        if band == "std":
            std = np.nanstd(values, axis=0)
            ok = count >= 2
            low[ok], high[ok] = mean[ok] - std[ok], mean[ok] + std[ok]
        elif band == "ci":
            # Seeds cover intervals of the grid, so few distinct sets of present seeds occur;
            # bootstrap each set's columns over exactly the seeds present there.
            present = ~np.isnan(values)
            patterns, inverse = np.unique(present, axis=1, return_inverse=True)
            for k in range(patterns.shape[1]):
                seeds = patterns[:, k]
                if seeds.sum() >= 2:
                    cols = inverse.ravel() == k
                    low[cols], high[cols] = _bootstrap_mean_ci(values[np.ix_(seeds, cols)])
    return SeedAggregate(grid, mean, low, high, len(curves))


def _bootstrap_mean_ci(values: "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
    """95% bootstrap CI of the mean over axis 0 (seeds), per column (grid step)."""
    return bootstrap_ci(values, _mean, BAND_RESAMPLES, axis=0, batch=100)


def _mean(x: "np.ndarray", axis: int = -1) -> "np.ndarray":
    import numpy as np

    return np.mean(x, axis=axis)


def format_steps(value: float, _pos: object = None) -> str:
    """Tick label for a step count: 0, 500, 100k, 1.5M, 2B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _new_axes(title: str, ylabel: str):  # noqa: ANN202
    # A bare Figure renders with the Agg canvas on savefig and never touches pyplot's global
    # backend, so plotting from a notebook or a headless server behaves the same.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(FuncFormatter(format_steps))
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def plot_env_png(
    env_id: str, aggregates: dict[str, SeedAggregate], colors: dict[str, str], ylabel: str, band: str, path: Path
) -> None:
    """One PNG: a line per algo (mean over seeds) with its band, labelled axes, legend, env title."""
    fig, ax = _new_axes(env_id, ylabel)
    for algo, agg in sorted(aggregates.items()):
        label = f"{algo} ({agg.seeds} seed{'s' if agg.seeds != 1 else ''})"
        ax.plot(agg.grid, agg.mean, color=colors[algo], linewidth=1.8, label=label)
        ax.fill_between(agg.grid, agg.low, agg.high, color=colors[algo], alpha=0.2, linewidth=0)
    ax.legend(title=f"mean over seeds; {BANDS[band]}", title_fontsize="small", fontsize="small", frameon=False)
    fig.savefig(path, dpi=150)


def plot_run_png(
    run: RunRecord, curve: Curve, raw: Curve | None, color: str, ylabel: str, path: Path, label: str | None = None
) -> None:
    """One PNG for one run: its curve (and for `train` the unsmoothed returns, faint)."""
    seed = "" if run.seed is None else f", seed {run.seed}"
    fig, ax = _new_axes(f"{run.algo} on {run.env_id}{seed}", ylabel)
    if raw is not None:
        ax.plot(raw.steps, raw.values, color=color, alpha=0.25, linewidth=0.8, label="per episode")
    ax.plot(curve.steps, curve.values, color=color, linewidth=1.8, label=label or run.run_id)
    ax.legend(fontsize="small", frameon=False)
    fig.savefig(path, dpi=150)


def curve_figures(
    figures: dict[str, dict[str, SeedAggregate]], colors: dict[str, str], ylabel: str, band: str
) -> list:
    """One interactive plotly figure per env (a line per algo, its band shaded); needs plotly."""
    import numpy as np
    import plotly.graph_objects as go

    out = []
    for env_id, aggregates in sorted(figures.items()):
        fig = go.Figure()
        for algo, agg in sorted(aggregates.items()):
            ok = np.isfinite(agg.low) & np.isfinite(agg.high)
            if ok.any():
                x = agg.grid[ok]
                band_trace(fig, np.concatenate([x, x[::-1]]), np.concatenate([agg.high[ok], agg.low[ok][::-1]]),
                            colors[algo], algo)
            fig.add_trace(go.Scatter(
                x=agg.grid, y=agg.mean, mode="lines", line={"color": colors[algo], "width": 2},
                name=f"{algo} ({agg.seeds} seed{'s' if agg.seeds != 1 else ''})", legendgroup=algo,
            ))
        fig.update_layout(
            title=env_id, xaxis_title="environment steps", yaxis_title=ylabel, template="plotly_white",
            legend_title_text=f"mean over seeds; {BANDS[band]}", height=480,
        )
        fig.update_xaxes(tickformat="~s")
        out.append(fig)
    return out


def write_html(
    figures: dict[str, dict[str, SeedAggregate]], colors: dict[str, str], ylabel: str, band: str, path: Path
) -> bool:
    """One self-contained interactive HTML page with a figure per env; False when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        note("notice: plotly is not installed, so no HTML plots were written (pip install 'axiomrl[plot]')")
        return False
    page = html_page(f"AxiomRL learning curves: {ylabel}", figure_divs(curve_figures(figures, colors, ylabel, band)))
    write_text_atomic(path, page)
    return True


def make_plots(
    runs: Sequence[RunRecord],
    output_dir: str | Path,
    metric: str = "train",
    smooth: int = 100,
    band: str = "ci",
    per_run: bool = False,
) -> list[Path]:
    """Write the learning-curve files for `runs` into `output_dir`; returns the paths written.

    `<env>__<metric>.png` per env, `<metric>.html` for all envs (when plotly is installed), and
    with `per_run` `per_run/<run_id>__<metric>.png`. Raises UsageError when no run has data.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("matplotlib is not installed; install the plot extra: pip install 'axiomrl[plot]'") from None

    curves: dict[str, dict[str, list[Curve]]] = {}
    by_run: list[tuple[RunRecord, Curve]] = []
    empty = []
    for run in runs:
        curve = run_curve(run, metric, smooth)
        if curve is None:
            empty.append(run)
            continue
        curves.setdefault(run.env_id, {}).setdefault(run.algo, []).append(curve)
        by_run.append((run, curve))
    if not curves:
        hint = "train or eval, or a metrics.jsonl key such as losses/value_loss"
        keys = sorted({k for r in runs for k in (r.metadata.get("latest_metrics") or {}) if k not in ("global_step", "iteration")})
        if keys:
            hint += f" (these runs log: {', '.join(keys[:12])}{', ...' if len(keys) > 12 else ''})"
        raise UsageError(f"none of the {len(runs)} runs has {metric!r} data to plot; pass --metric {hint}")
    if empty:
        warn(f"{len(empty)} run{'s have' if len(empty) != 1 else ' has'} no {metric!r} data yet and {'are' if len(empty) != 1 else 'is'} not plotted")

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    colors = algo_colors({algo for per_env in curves.values() for algo in per_env})
    ylabel = metric_label(metric, smooth)
    written: list[Path] = []
    figures = {env: {algo: aggregate_curves(cs, band) for algo, cs in per_env.items()} for env, per_env in curves.items()}
    for env_id, aggregates in sorted(figures.items()):
        path = output_dir / f"{_slug(env_id)}__{_slug(metric)}.png"
        plot_env_png(env_id, aggregates, colors, ylabel, band, path)
        written.append(path)
    html = output_dir / f"{_slug(metric)}.html"
    if write_html(figures, colors, ylabel, band, html):
        written.append(html)
    if per_run:
        (output_dir / "per_run").mkdir(exist_ok=True)
        for run, curve in by_run:
            raw = run_curve(run, metric, smooth=1) if metric == "train" and smooth > 1 else None
            path = output_dir / "per_run" / f"{_slug(run.run_id)}__{_slug(metric)}.png"
            label = f"mean of last {smooth} episodes" if raw is not None else None
            plot_run_png(run, curve, raw, colors[run.algo], ylabel, path, label)
            written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl plot`."""
    add_run_selection_arguments(parser)
    parser.add_argument(
        "--metric", default="train", metavar="M",
        help="train (training episodic return, smoothed; default), eval (mean evaluation return), "
        "or any metrics.jsonl key, e.g. losses/value_loss or charts/SPS",
    )
    parser.add_argument("--output-dir", metavar="DIR", help="where to write the files (default: <first RUNS_DIR>/plots)")
    parser.add_argument("--per-run", action="store_true", help="also write one PNG per run into <output-dir>/per_run/")
    parser.add_argument("--smooth", type=int, default=100, metavar="N",
                        help="for --metric train: average the last N episodes at each point (default: 100)")
    parser.add_argument("--band", choices=list(BANDS), default="ci",
                        help="shaded band: ci = 95%% bootstrap CI of the mean over seeds (default), std = ± 1 std")
    parser.add_argument("--profile", action="store_true",
                        help="instead of learning curves: performance profiles (profile.png, profile.html) and the "
                        "aggregate-metrics interval plot (aggregates.png) of `axiomrl compare`; --metric is then "
                        "train, final-eval or best-eval")
    add_score_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """`axiomrl plot`: prints the written paths; UsageError when nothing could be plotted."""
    if args.smooth < 1:
        raise UsageError(f"--smooth {args.smooth} must be at least 1 (1 means no smoothing)")
    output_dir = Path(args.output_dir) if args.output_dir else Path(args.runs_dirs[0]) / "plots"
    if args.profile:
        from axiomrl_utils.commands.compare import check_resamples, compare_runs, metric_key
        from axiomrl_utils.commands.profile_plot import write_profile_plots

        check_resamples(args.bootstrap_resamples)
        metric = metric_key(args.metric)
        comparison = compare_runs(selected_runs(args, default_status="finished"), metric, args.normalize,
                                  args.reference_scores, args.bootstrap_resamples)
        for path in write_profile_plots(comparison, output_dir, args.bootstrap_resamples):
            print(path)
        for problem in comparison.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if comparison.problems else 0
    runs = selected_runs(args)
    for path in make_plots(runs, output_dir, args.metric, args.smooth, args.band, args.per_run):
        print(path)
    return 0
