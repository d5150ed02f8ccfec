"""Performance profiles and the aggregate-metrics interval plot of `axiomrl plot --profile` (and of
the HTML report): PNG with matplotlib, interactive figures with plotly.

A profile is, per algo, the fraction of (run, env) scores above each normalised-score threshold
tau with its 95% stratified-bootstrap band (`across_tasks.performance_profile`); the interval plot
shows each algo's IQM, mean, median and optimality gap with their 95% CIs (`compare.Comparison`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from axiomrl_utils.commands.compare import AGGREGATE_LABELS, Comparison
from axiomrl_utils.commands.figures import band_trace, algo_colors, figure_divs, html_page
from axiomrl_utils.commands.stats import DEFAULT_RESAMPLES
from axiomrl_utils.jsonl import write_text_atomic

if TYPE_CHECKING:
    from axiomrl_utils.commands.across_tasks import Profile


def comparison_profiles(comparison: Comparison, n_resamples: int = DEFAULT_RESAMPLES) -> dict[str, "Profile"]:
    """Each algo's performance profile over the comparison's envs, on one common tau grid."""
    from axiomrl_utils.commands.across_tasks import performance_profile, profile_taus

    tasks = {
        algo: [per_env[e] for e in (comparison.common_envs or sorted(per_env))]
        for algo, per_env in comparison.scores.items()
    }
    taus = profile_taus(list(tasks.values()))
    return {algo: performance_profile(t, taus, n_resamples) for algo, t in sorted(tasks.items())}


def score_label(comparison: Comparison) -> str:
    """The x axis of a profile: what a score is."""
    return "raw score" if comparison.normalize == "none" else f"{comparison.normalize}-normalised score (tau)"


def profile_png(profiles: dict[str, "Profile"], colors: dict[str, str], xlabel: str, path: Path) -> None:
    """The profiles as one PNG: a step line per algo with its shaded 95% band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for algo, p in profiles.items():
        ax.plot(p.taus, p.fraction, color=colors[algo], linewidth=1.8, label=algo)
        ax.fill_between(p.taus, p.low, p.high, color=colors[algo], alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title("Performance profile")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.legend(title="shaded: 95% stratified-bootstrap CI", title_fontsize="small", fontsize="small", frameon=False)
    fig.savefig(path, dpi=150)


def aggregates_png(comparison: Comparison, colors: dict[str, str], path: Path) -> None:
    """The interval plot: one panel per aggregate, a horizontal 95% CI bar and point per algo."""
    from matplotlib.figure import Figure

    rows = comparison.aggregates
    fig = Figure(figsize=(3.0 * len(AGGREGATE_LABELS), 0.5 * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(AGGREGATE_LABELS), sharey=True)
    for ax, (key, label) in zip(axes, AGGREGATE_LABELS.items()):
        for i, row in enumerate(rows):
            low, high = row[f"{key}_ci_low"], row[f"{key}_ci_high"]
            if low is not None:
                ax.barh(i, high - low, left=low, height=0.6, color=colors[row["algo"]], alpha=0.6)
            ax.plot([row[key]], [i], "|", color="black", markersize=14)
        ax.set_title(label)
        ax.set_yticks(range(len(rows)), [r["algo"] for r in rows])
        ax.grid(True, axis="x", alpha=0.3, linewidth=0.6)
    fig.supxlabel(f"{score_label(comparison).replace(' (tau)', '')}; bars: 95% stratified-bootstrap CI")
    fig.savefig(path, dpi=150)


def profile_figure(profiles: dict[str, "Profile"], colors: dict[str, str], xlabel: str):  # noqa: ANN201
    """The profiles as an interactive plotly figure."""
    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    for algo, p in profiles.items():
        band_trace(fig, np.concatenate([p.taus, p.taus[::-1]]), np.concatenate([p.high, p.low[::-1]]), colors[algo], algo)
        fig.add_trace(go.Scatter(x=p.taus, y=p.fraction, mode="lines", line={"color": colors[algo], "width": 2},
                                 name=algo, legendgroup=algo))
    fig.update_layout(title="Performance profile", xaxis_title=xlabel, yaxis_title="fraction of runs with score > tau",
                      template="plotly_white", height=480, legend_title_text="shaded: 95% CI")
    return fig


def aggregates_figure(comparison: Comparison, colors: dict[str, str]):  # noqa: ANN201
    """The aggregate metrics with their CIs as an interactive plotly figure (one panel each)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(AGGREGATE_LABELS), subplot_titles=list(AGGREGATE_LABELS.values()),
                        shared_yaxes=True)
    for col, key in enumerate(AGGREGATE_LABELS, start=1):
        for row in comparison.aggregates:
            low, high = row[f"{key}_ci_low"], row[f"{key}_ci_high"]
            error = None if low is None else {"type": "data", "symmetric": False,
                                              "array": [high - row[key]], "arrayminus": [row[key] - low]}
            fig.add_trace(go.Scatter(x=[row[key]], y=[row["algo"]], mode="markers", error_x=error,
                                     marker={"color": colors[row["algo"]], "size": 10}, name=row["algo"],
                                     showlegend=False), row=1, col=col)
    fig.update_layout(title="Aggregate metrics (95% stratified-bootstrap CIs)", template="plotly_white",
                      height=120 + 40 * len(comparison.aggregates))
    return fig


def write_profile_plots(comparison: Comparison, output_dir: Path, n_resamples: int = DEFAULT_RESAMPLES) -> list[Path]:
    """profile.png, aggregates.png and (with plotly) profile.html in `output_dir`; the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    colors = algo_colors(list(comparison.scores))
    profiles = comparison_profiles(comparison, n_resamples)
    xlabel = score_label(comparison)
    written = [output_dir / "profile.png", output_dir / "aggregates.png"]
    profile_png(profiles, colors, xlabel, written[0])
    aggregates_png(comparison, colors, written[1])
    try:
        import plotly  # noqa: F401
    except ImportError:
        return written
    page = html_page("AxiomRL performance profiles",
                     figure_divs([profile_figure(profiles, colors, xlabel), aggregates_figure(comparison, colors)]))
    write_text_atomic(output_dir / "profile.html", page)
    return written + [output_dir / "profile.html"]
