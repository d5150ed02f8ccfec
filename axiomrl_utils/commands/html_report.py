"""The one-page HTML report of a runs directory or sweep (`axiomrl report --html`, and the end of
every sweep): leaderboard, compare table, learning curves per env and performance profiles
(interactive, plotly), and one row per run with its status, config, reproduce command and a link
to its directory. plotly.js is inline, so the page opens from disk with no server and no network.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from axiomrl_utils import UsageError, __version__
from axiomrl_utils.commands.output import Column, warn
from axiomrl_utils.commands.runs import RunRecord
from axiomrl_utils.commands.stats import DEFAULT_RESAMPLES
from axiomrl_utils.jsonl import write_text_atomic

STYLE = """<style>
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; } code, pre { font-size: 0.85em; } pre { margin: 0; }
.problem { color: #a00; }
</style>"""


def html_table(rows: Sequence[dict], columns: Sequence[Column], table_id: str) -> str:
    """`rows` as an HTML table with the same cells as the text table."""
    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    num = ' class="num"'
    body = "".join(
        "<tr>" + "".join(f"<td{num if c.align == 'right' else ''}>{escape(c.cell(r))}</td>" for c in columns) + "</tr>\n"
        for r in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n'


def _runs_table(runs: Sequence[RunRecord], rows: Sequence[dict], page_dir: Path) -> str:
    from axiomrl_utils.commands.output import fmt_float
    from axiomrl_utils.console import fmt_duration

    config = {r.dir: r.path / "config.yaml" for r in runs}
    out = ['<table id="runs"><thead><tr><th>algo</th><th>env</th><th>seed</th><th>status</th><th>train return</th>'
           "<th>best eval</th><th>wall time</th><th>config</th><th>reproduce</th><th>directory</th></tr></thead><tbody>"]
    for row in rows:
        cfg_path = config[row["run_dir"]]
        cfg = cfg_path.read_text(encoding="utf-8", errors="replace") if cfg_path.is_file() else "(no config.yaml)"
        link = quote(os.path.relpath(os.path.abspath(row["run_dir"]), page_dir.resolve()).replace(os.sep, "/")) + "/"
        out.append(
            f"<tr><td>{escape(row['algo'])}</td><td>{escape(row['env_id'])}</td><td>{escape(str(row['seed']))}</td>"
            f"<td>{escape(row['status'])}</td><td class=\"num\">{fmt_float(row['train_return'])}</td>"
            f"<td class=\"num\">{fmt_float(row['best_eval_return'])}</td><td class=\"num\">{fmt_duration(row['wall_time_s'])}</td>"
            f"<td><details><summary>config</summary><pre>{escape(cfg)}</pre></details></td>"
            f"<td><code>{escape(row['command'] or '-')}</code></td>"
            f"<td><a href=\"{escape(link)}\">{escape(row['run_id'])}</a></td></tr>"
        )
    return "\n".join(out) + "</tbody></table>\n"


def _comparison_section(finished: Sequence[RunRecord], metric: str, n_resamples: int) -> tuple[str, list]:
    """The compare tables and the profile figures; reference scores when they cover every env,
    else min/max normalisation (said on the page)."""
    from axiomrl_utils.commands.compare import AGGREGATE_COLUMNS, IMPROVEMENT_COLUMNS, compare_runs, describe
    from axiomrl_utils.commands.figures import algo_colors
    from axiomrl_utils.commands.profile_plot import aggregates_figure, comparison_profiles, profile_figure, score_label

    try:
        comparison = compare_runs(finished, metric, "reference", None, n_resamples)
        if any("reference scores" in p for p in comparison.problems):
            comparison = compare_runs(finished, metric, "minmax", None, n_resamples)
    except UsageError as e:
        return f'<p class="problem">No comparison: {escape(str(e))}</p>\n', []
    parts = [f"<p>{escape(describe(comparison))}.</p>", html_table(comparison.aggregates, AGGREGATE_COLUMNS, "aggregates")]
    if comparison.improvements:
        parts += ["<p>Probability of improvement P(X &gt; Y): that a run of X beats a run of Y on an env.</p>",
                  html_table(comparison.improvements, IMPROVEMENT_COLUMNS, "improvements")]
    parts += [f'<p class="problem">{escape(p)}</p>' for p in comparison.problems]
    colors = algo_colors(list(comparison.scores))
    profiles = comparison_profiles(comparison, n_resamples)
    figures = [profile_figure(profiles, colors, score_label(comparison)), aggregates_figure(comparison, colors)]
    return "\n".join(parts) + "\n", figures


def write_html_report(
    runs: Sequence[RunRecord], report_rows: Sequence[dict], path: str | os.PathLike, title: str,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """Write the report page for `runs` to `path` atomically; UsageError when plotly is missing.

    `report_rows` are `axiomrl report`'s rows of `runs` (`report.report_rows`; passed in because
    `axiomrl report --html` calls this module).

    The leaderboard, comparison and profiles count finished runs (as `axiomrl leaderboard`); the
    learning curves and the runs table show every run.
    """
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise UsageError("the HTML report needs plotly; install the plot extra: pip install 'axiomrl[plot]'") from None
    from axiomrl_utils.commands.leaderboard import LEADERBOARD_COLUMNS, NOTE_COLUMN, leaderboard_rows
    from axiomrl_utils.commands.figures import algo_colors, figure_divs, html_page
    from axiomrl_utils.commands.plot import aggregate_curves, curve_figures, metric_label, run_curve

    path = Path(path)
    finished = [r for r in runs if r.status == "finished"]
    body = [STYLE, f"<h1>{escape(title)}</h1>",
            f"<p>{len(runs)} runs, {len(finished)} finished. Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
            f"by axiomrl {escape(__version__)}.</p>", "<h2>Leaderboard</h2>"]
    rows = leaderboard_rows(finished, "train") if finished else []
    body.append(html_table(rows, LEADERBOARD_COLUMNS + [NOTE_COLUMN], "leaderboard") if rows
                else "<p>No finished run has a training return yet.</p>")
    body.append("<h2>Comparison across envs</h2>")
    section, profile_figs = _comparison_section(finished, "train", n_resamples) if finished else ("<p>No finished runs.</p>", [])
    body.append(section)

    curves: dict = {}
    for run in runs:
        curve = run_curve(run, "train")
        if curve is not None:
            curves.setdefault(run.env_id, {}).setdefault(run.algo, []).append(curve)
    body.append("<h2>Learning curves</h2>")
    if curves:
        colors = algo_colors({algo for per_env in curves.values() for algo in per_env})
        aggregates = {env: {algo: aggregate_curves(cs) for algo, cs in per_env.items()} for env, per_env in curves.items()}
        body.append(figure_divs(curve_figures(aggregates, colors, metric_label("train", 100), "ci")))
    else:
        body.append("<p>No run has logged a training episode yet.</p>")
    body.append("<h2>Performance profiles</h2>")
    body.append(figure_divs(profile_figs) if profile_figs else "<p>Not enough finished runs for profiles.</p>")
    body.append("<h2>Runs</h2>")
    body.append(_runs_table(runs, report_rows, path.parent))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, html_page(title, "\n".join(body)))
    return path


def write_html_report_quietly(
    runs: Sequence[RunRecord], report_rows: Sequence[dict], path: str | os.PathLike, title: str
) -> Path | None:
    """`write_html_report` for a sweep's end: a problem is one warning, never a failed sweep."""
    try:
        return write_html_report(runs, report_rows, path, title)
    except (UsageError, OSError) as e:
        warn(f"no HTML report written ({e})")
        return None
