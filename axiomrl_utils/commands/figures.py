"""Shared pieces of the `axiomrl` figures (learning curves, performance profiles, the HTML report):
one color per algo, shaded plotly bands, and self-contained HTML pages with plotly.js inline.

matplotlib and plotly are imported inside the functions.
"""

from __future__ import annotations

from typing import Sequence


def algo_colors(algos: Sequence[str]) -> dict[str, str]:
    """One fixed color per algo across every figure (matplotlib's tab10, then tab20)."""
    from matplotlib import colormaps, colors

    palette = [colors.to_hex(c) for c in colormaps["tab10"].colors + colormaps["tab20"].colors[1::2]]
    return {algo: palette[i % len(palette)] for i, algo in enumerate(sorted(algos))}


def band_trace(fig, x, y, color: str, algo: str) -> None:  # noqa: ANN001
    """A shaded band (a closed polygon) in `color`, grouped with the algo's line."""
    import plotly.graph_objects as go
    from matplotlib import colors as mcolors

    r, g, b = (int(255 * v) for v in mcolors.to_rgb(color))
    fig.add_trace(go.Scatter(x=x, y=y, fill="toself", fillcolor=f"rgba({r},{g},{b},0.2)", line={"width": 0},
                             hoverinfo="skip", showlegend=False, legendgroup=algo))


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page: plotly.js inline in the head (no CDN, so it opens offline)."""
    from html import escape

    from plotly.offline import get_plotlyjs

    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n"
        f"<body style=\"font-family: sans-serif\">\n{body}\n</body></html>\n"
    )


def figure_divs(figures: Sequence) -> str:
    """The figures as HTML divs that use the page's inline plotly.js."""
    return "".join(fig.to_html(full_html=False, include_plotlyjs=False) for fig in figures)
