"""The Diagnose page's figures of a panel and its self-contained HTML report.

:func:`panel_figures` draws a :class:`perco_viz.analysis.diagnose.Panel` (the embeddings side by
side, the c_i histogram, the Shepard diagram and the rank-agreement heatmap, each captioned in
:data:`FIGURE_CAPTIONS`); :func:`html_report` writes the metric table, a sentence on each
metric and the figures as interactive plotly with plotly.js embedded once (the file opens
offline). Pure functions: data in, figures or a string out; no I/O, no Streamlit.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from perco_viz.analysis.diagnose import Panel, panel_table
from perco_viz.analysis.embeddings import Coloring
from perco_viz.figures.embeddings import side_by_side_embeddings
from perco_viz.figures.per_sample import coherence_histogram
from perco_viz.figures.rank_agreement import rank_agreement_heatmap, shepard_figure

FIGURE_CAPTIONS: dict[str, str] = {
    "Embeddings": "Each dot is one input. Left: the teacher's features (PCA to 2-D); right: the student's, turned "
                  "into the teacher's orientation (Procrustes). The student need not copy the shape — only who is "
                  "near whom.",
    "Per-sample coherence": "c_i for each input: the share of pairs of other inputs that the student orders, as "
                            "seen from input i, like the teacher. The red dashed line is the 10th percentile: a long "
                            "left tail means some inputs are perceived badly even when PC is high.",
    "Shepard diagram": "Each dot is a pair of inputs: its teacher distance (x) against its student distance (y). "
                       "Perception coherence needs a rising cloud, not a straight line: any monotone bend is fine; "
                       "vertical spread means pairs whose order the student swaps.",
    "Rank agreement": "A[i, j] = 1 − |R_T − R_S|: 1 (green) when the student puts input j at the same place in "
                      "anchor i's ranking as the teacher does, red where it does not. Rows and columns are grouped "
                      "by class: a red block means the student confuses how those classes relate.",
}


def embeddings_figure(panel: Panel, coloring: Coloring | None = None, *, highlight=None) -> go.Figure:
    """The teacher's and the student's features side by side (PCA; the student turned into the
    teacher's orientation), coloured by class (else by c_i) or by ``coloring``.

    Args:
        panel: the diagnosis (``teacher_xy``, ``student_xy`` (m, 2)).
        coloring: a :class:`~perco_viz.analysis.embeddings.Coloring` of the m points (e.g. a
            metadata column, categorical or continuous); ``None``: class, else c_i.
        highlight: row ids (``panel.indices`` values) to ring (e.g. the points a search matched).

    Every point of the panel is drawn (WebGL above a few thousand points; 100,000 stay
    interactive); the tooltip shows c_i (and the class when the colour is something else) from
    ``customdata`` (:func:`~perco_viz.analysis.embeddings.hover_fields`), not per-point strings.

    Returns:
        go.Figure with two panels; ``customdata[:, 0]`` is the row of each point, ``customdata[:, 1:]``
        the tooltip's numbers.
    """
    import numpy as np

    from perco_viz.analysis.embeddings import hover_fields

    if coloring is None:
        labelled = panel.labels is not None
        values, kind = (panel.labels, "label") if labelled else (panel.coherence, "continuous")
        names, what, title = panel.class_names, None, "class" if labelled else "per-sample coherence c_i"
        crange, scale = None, None
    else:
        values, kind, names, what = coloring.values, coloring.kind, coloring.names, coloring.title
        title, crange, scale = coloring.title, coloring.range, coloring.colorscale
    by_class = kind == "label" and coloring is None
    hover = hover_fields(np.arange(len(panel.teacher_xy)), labels=None if by_class else panel.labels,
                         class_names=panel.class_names, coherence=panel.coherence)
    fig = side_by_side_embeddings(
        panel.teacher_xy, panel.student_xy, color=values, color_kind=kind, labels_text=names, ids=panel.indices,
        hover=hover, highlight=highlight, color_title=what, color_range=crange,
        titles=("teacher (PCA of its features)", "student (PCA, turned to match the teacher)"),
        title=f"Teacher and student features · {panel.n_used:,} inputs coloured by {title}",
        axis_titles=("PCA 1", "PCA 2"))
    if scale is not None and kind == "continuous":
        fig.update_layout(coloraxis_colorscale=scale)
    return fig


def panel_captions(panel: Panel) -> dict[str, str]:
    """:data:`FIGURE_CAPTIONS` with the rows each figure of ``panel`` draws (all, or a sample of how many)."""
    n, m = panel.n_total, panel.n_used
    nb = panel.n_neighbour

    def rows(k: int) -> str:
        return f" All {n:,} inputs." if k == n else f" A stratified sample of {k:,} of the {n:,} inputs (seed {panel.seed})."

    each = " (each c_i estimated on all rows; the table gives its interval)" if panel.estimated else ""
    extra = {"Embeddings": rows(m), "Per-sample coherence": rows(m).rstrip(".") + each + ".",
             "Shepard diagram": rows(nb), "Rank agreement": rows(nb)}
    return {heading: text + extra.get(heading, "") for heading, text in FIGURE_CAPTIONS.items()}


def panel_figures(panel: Panel) -> dict[str, go.Figure]:
    """The figures of a panel, keyed by the headings of :data:`FIGURE_CAPTIONS`.

    Returns:
        ``{"Embeddings": side by side PCA, "Per-sample coherence": c_i histogram,
        "Shepard diagram": ..., "Rank agreement": heatmap}`` (plotly figures).
    """
    emb = embeddings_figure(panel)
    hist = coherence_histogram(panel.coherence)
    shepard = shepard_figure(*panel.shepard, pc=panel.report["pc"])
    heat_labels = panel.neighbour_labels if panel.neighbour_indices is not None else panel.labels
    heat = rank_agreement_heatmap(panel.agreement, labels=heat_labels, class_names=panel.class_names)
    return {"Embeddings": emb, "Per-sample coherence": hist, "Shepard diagram": shepard, "Rank agreement": heat}


# --------------------------------------------------------------------------- the report
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1.2em;color:#1f2430;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.1em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #e3e6ec;
padding-bottom:.2em} .sub{color:#5b6270;margin-top:0}
table{border-collapse:collapse;width:100%;margin:.6em 0} th,td{text-align:left;padding:.45em .7em;
border-bottom:1px solid #e3e6ec;vertical-align:top} th{background:#f5f7fa} td.v{font-variant-numeric:tabular-nums;
font-weight:600;white-space:nowrap} .fig{margin:1.2em 0} .cap{color:#5b6270;font-size:.92em;margin:.2em 0 0}
footer{color:#8a909c;font-size:.85em;margin-top:3em}
"""


def _figure_items(figures: Mapping[str, go.Figure] | Sequence[go.Figure]) -> list[tuple[str, go.Figure]]:
    if isinstance(figures, Mapping):
        return list(figures.items())
    items = []
    for fig in figures:
        title = getattr(getattr(fig.layout, "title", None), "text", None) or "figure"
        items.append((title, fig))
    return items


def html_report(panel: Panel, figures: Mapping[str, go.Figure] | Sequence[go.Figure], *, title: str = "Diagnosis of a student",
                captions: Mapping[str, str] | None = None) -> str:
    """One self-contained HTML file: the metric table, a sentence on each metric, every figure.

    plotly.js is embedded once, inline, before the first figure, so the file opens offline and
    every figure stays interactive.

    Args:
        panel: the diagnosis.
        figures: plotly figures, as ``{caption heading: figure}`` or a sequence (their
            layout titles become the headings).
        title: the page heading.
        captions: ``{heading: how to read it}`` (default :func:`panel_captions`: the captions and
            the rows each figure draws).

    Returns:
        The HTML document.
    """
    captions = panel_captions(panel) if captions is None else captions
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{esc(r['metric'])}</td><td class='v'>{esc(r['value'])}</td><td>{esc(r['computed on'])}</td>"
        f"<td>{esc(r['what it measures'])}</td></tr>"
        for r in panel_table(panel).to_dict("records"))
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='sub'>{esc(panel.source)}</p>" if panel.source else "",
        f"<p>{esc(panel.scope())} Teacher features: {panel.teacher.shape[1]}-d; student features: "
        f"{panel.student.shape[1]}-d{'; labelled' if panel.labels is not None else '; no labels (accuracies skipped)'}.</p>",
        "<h2>Metrics</h2>",
        "<table><thead><tr><th>metric</th><th>value</th><th>computed on</th><th>what it measures</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>",
        "<p class='cap'>“exact on all n rows”: computed from every row. “estimated on all n rows”: from random "
        "triplets of all rows, ± the half-width of its 95% confidence interval. “on a sample of m rows”: computed "
        "on that stratified, seeded sample (the O(n²) metrics).</p>",
        "<p class='cap'>Perception coherence asks only that the student <em>rank</em> distances as the teacher does; "
        "geometry may differ. PC = 1 means the same ranking from every anchor, 0.5 is chance.</p>",
    ]
    first = True
    for heading, fig in _figure_items(figures):
        body = fig.to_html(full_html=False, include_plotlyjs="inline" if first else False,
                           config={"displaylogo": False})
        first = False
        cap = captions.get(heading)
        parts.append(f"<h2>{esc(heading)}</h2><div class='fig'>{body}"
                     + (f"<p class='cap'>{esc(cap)}</p>" if cap else "") + "</div>")
    parts.append("<footer>Made with perco_viz · method: Nguyen et al., <em>Feature Representation Transferring "
                 "to Lightweight Models via Perception Coherence</em>, arXiv:2505.06595 (TMLR 2026).</footer>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
