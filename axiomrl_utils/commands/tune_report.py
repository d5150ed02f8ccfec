"""The results of a study of `axiomrl tune`: the ranked table of its trials, the best trial's
config as a file the scripts' `--config` takes, and the optimisation-history and
parameter-importance plots (PNG and self-contained HTML), all written into the study directory.

optuna, matplotlib and plotly are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils.commands.output import Column, fmt_float, render
from axiomrl_utils.commands.tune_space import describe
from axiomrl_utils.console import fmt_duration
from axiomrl_utils.jsonl import dumps, read_json, write_text_atomic

BEST_CONFIG = "best_config.yaml"
# config.yaml fields that say where and how a run is managed, not what it learns
RUN_MANAGEMENT = frozenset({"seed", "output_dir", "resume", "dry_run", "allow_config_change", "pause_at_step", "progress",
                            "track", "wandb_project_name", "wandb_entity", "capture_video", "cuda", "config"})
STATE_ORDER = {"complete": 0, "running": 1, "pruned": 2, "waiting": 3, "failed": 4}


def trial_rows(study: Any, direction: str) -> list[dict[str, Any]]:
    """One row per trial, ranked: finished trials by score, then running, pruned and failed ones."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        ci = t.user_attrs.get("score_ci") or [None, None]
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({
            "trial": t.number, "state": state, "score": t.value, "ci_low": ci[0], "ci_high": ci[1],
            "last_report": t.intermediate_values[last] if last is not None else None, "last_report_step": last,
            "params": dict(t.params), "duration_s": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
            "overhead_s": t.user_attrs.get("overhead_s"), "error": t.user_attrs.get("error"),
            "runs": t.user_attrs.get("runs") or [],
        })
    sign = -1.0 if direction == "maximize" else 1.0

    def key(r: dict[str, Any]) -> tuple:
        value = r["score"] if r["state"] == "complete" else r["last_report"]
        return (STATE_ORDER.get(r["state"], 5), sign * value if value is not None else float("inf"), r["trial"])

    rows.sort(key=key)
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


COLUMNS = [
    Column("rank", lambda r: str(r["rank"]), "right"),
    Column("trial", lambda r: str(r["trial"]), "right"),
    Column("status", lambda r: r["state"] + (f" @{r['last_report_step']:,}" if r["state"] == "pruned" and r["last_report_step"] is not None else "")),
    Column("score", lambda r: fmt_float(r["score"], 3), "right"),
    Column("95% CI over seeds", lambda r: f"[{fmt_float(r['ci_low'], 3)}, {fmt_float(r['ci_high'], 3)}]" if r["ci_low"] is not None else "-", "right"),
    Column("time", lambda r: fmt_duration(r["duration_s"]) if r["duration_s"] is not None else "-", "right"),
    Column("params", lambda r: describe(r["params"])),
]


def best_config(study_dir: Path, rows: list[dict[str, Any]], env_ids: list[str]) -> Optional[dict[str, Any]]:
    """The best finished trial's full config (its first run's config.yaml without the run-management
    fields, and without env_id when the study tuned several envs), or None before any trial finished."""
    best = next((r for r in rows if r["state"] == "complete"), None)
    if best is None or not best["runs"] or not best["runs"][0].get("run_dir"):
        return None
    config = read_json(study_dir / best["runs"][0]["run_dir"] / "config.yaml")
    drop = RUN_MANAGEMENT | ({"env_id"} if len(env_ids) > 1 else set())
    return {k: v for k, v in config.items() if k not in drop}


def write_report(study_dir: Path, study: Any, settings: dict[str, Any]) -> str:
    """Write report.md, report.json, best_config.yaml and the plots; return the text table and the paths."""
    rows = trial_rows(study, settings["objective"]["direction"])
    table = render(rows, COLUMNS, "table") if rows else "no trials yet\n"
    config = best_config(study_dir, rows, settings["env_ids"])
    if config is not None:
        write_text_atomic(study_dir / BEST_CONFIG, dumps(config, indent=2) + "\n")
    counts = {s: sum(r["state"] == s for r in rows) for s in STATE_ORDER}
    objective = settings["objective"]
    overheads = [r["overhead_s"] for r in rows if r["overhead_s"] is not None]
    md = [f"# Study {settings['name']}", "",
          f"`{settings['algo']}` on {', '.join(settings['env_ids'])}, seeds {settings['seeds']}; objective: "
          f"{objective['aggregate']} across envs of the {objective['metric']} metric"
          f"{' normalised by ' + str(objective['bounds']) if objective['bounds'] else ''}, {objective['direction']}d.", "",
          f"{len(rows)} trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['running']} running, "
          f"{counts['failed']} failed."
          + (f" Tuner overhead per trial (beyond the runs): mean {sum(overheads) / len(overheads):.2f} s." if overheads else ""),
          "", render(rows, COLUMNS, "markdown").rstrip("\n")]
    if config is not None:
        md += ["", f"Best config ({BEST_CONFIG}, for `--config`):", "", "```json", dumps(config, indent=2), "```"]
    write_text_atomic(study_dir / "report.md", "\n".join(md) + "\n")
    write_text_atomic(study_dir / "report.json", dumps({"study": settings["name"], "objective": objective,
                                                         "trials": rows, "best_config": config}, indent=2) + "\n")
    plots = write_plots(study_dir, study)
    lines = [table.rstrip("\n")]
    if config is not None:
        best = next(r for r in rows if r["state"] == "complete")
        lines.append(f"best: trial {best['trial']}, score {fmt_float(best['score'], 3)}; its config: {study_dir / BEST_CONFIG}")
    lines.append(f"report: {study_dir / 'report.md'} (also report.json)" + (f"; plots: {', '.join(plots)}" if plots else ""))
    return "\n".join(lines) + "\n"


def write_plots(study_dir: Path, study: Any) -> list[str]:
    """history.png/html and importance.png/html where the study allows them; returns the files written."""
    import warnings

    import matplotlib
    import optuna

    matplotlib.use("Agg")  # files only, whatever display the shell has
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return []
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kinds = [("history", optuna.visualization.matplotlib.plot_optimization_history, optuna.visualization.plot_optimization_history, {})]
        varying = {k for t in complete for k in t.params if len({repr(u.params.get(k)) for u in complete}) > 1}
        if len(complete) >= 2 and varying:
            from optuna.importance import PedAnovaImportanceEvaluator

            kwargs = {"evaluator": PedAnovaImportanceEvaluator()}
            kinds.append(("importance", optuna.visualization.matplotlib.plot_param_importances,
                          optuna.visualization.plot_param_importances, kwargs))
        for name, png, html, kwargs in kinds:
            try:
                ax = png(study, **kwargs)
                _save_png(ax.figure, study_dir / f"{name}.png")
                import matplotlib.pyplot as plt

                plt.close(ax.figure)
                written.append(f"{name}.png")
                fig = html(study, **kwargs)
                from axiomrl_utils.commands.figures import figure_divs, html_page

                write_text_atomic(study_dir / f"{name}.html", html_page(f"{study.study_name}: {name}", figure_divs([fig])))
                written.append(f"{name}.html")
            except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. too few trials for an importance
                print(f"note: no {name} plot ({str(e).splitlines()[0] if str(e) else type(e).__name__})", flush=True)
    return written


def _save_png(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    os.replace(tmp, path)
