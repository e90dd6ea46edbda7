"""Plotly figures of perception coherence: pure functions, data in (arrays, lists, dicts), ``go.Figure`` out.

No I/O and no Streamlit here. Every figure uses :data:`TEMPLATE` (white background, the purple
:data:`PRIMARY`, the class palette :data:`PALETTE`) and :data:`COHERENCE_SCALE` for c_i and A, on
which low values are red (alarming) and high values green. 2-D scatters are SVG ``go.Scatter`` up
to :data:`WEBGL_ABOVE` points and ``go.Scattergl`` beyond (fluid up to ~100k points; WebGL costs a
context per plot and is slow where the browser has no GPU), 3-D ones ``go.Scatter3d``. Words as in
DESIGN.md §3: teacher, student, PC, c_i (per-sample coherence), R (normalized ranks), A (rank
agreement), τ, kernel.

>>> import numpy as np
>>> fig = embedding_figure(np.zeros((3, 2)), color=[0, 1, 1], title="probe set")
>>> len(fig.data)
2
"""

from __future__ import annotations

from perco_viz.figures.compare import (
    compare_embeddings,
    metrics_bar,
)
from perco_viz.figures.curves import (
    CURVE_PANELS,
    compare_curves,
    record_number,
    training_curves,
)
from perco_viz.figures.embeddings import (
    animation_figure,
    embedding_figure,
    embedding_panel,
    method_axis_titles,
    side_by_side_embeddings,
)
from perco_viz.figures.export import (
    figure_html,
    figure_image,
)
from perco_viz.figures.images import (
    image_data_uri,
    thumbnail_strip_html,
)
from perco_viz.figures.per_sample import (
    coherence_histogram,
    coherence_over_epochs,
    per_class_coherence,
)
from perco_viz.figures.rank_agreement import (
    anchor_neighbours_figure,
    block_mean,
    compact_matrix,
    mark_row,
    rank_agreement_heatmap,
    ranks_heatmap,
    row_picker_trace,
    shepard_figure,
)
from perco_viz.figures.style import (
    COHERENCE_SCALE,
    DENSITY_SCALE,
    HEIGHT,
    LEGEND_ON_TOP,
    MARGIN,
    METRIC_LABELS,
    PALETTE,
    PRIMARY,
    RANK_SCALE,
    TEMPLATE,
    TOO_FAR,
    TOO_NEAR,
    WEBGL_ABOVE,
    as_coords,
    class_groups,
    class_label,
    default_axis_titles,
    for_presentation,
    marker_size,
    metric_label,
    new_figure,
    no_data,
    set_axis_titles,
)
from perco_viz.figures.teaching import (
    loss_history_figure,
    loss_terms_figure,
    soft_step_figure,
    soft_step_functions,
    soft_vs_hard_figure,
    teaching_points_figure,
    two_students_figure,
)

__all__ = [
    "TOO_FAR",
    "TOO_NEAR",
    "COHERENCE_SCALE",
    "DENSITY_SCALE",
    "HEIGHT",
    "LEGEND_ON_TOP",
    "MARGIN",
    "METRIC_LABELS",
    "PALETTE",
    "PRIMARY",
    "RANK_SCALE",
    "TEMPLATE",
    "WEBGL_ABOVE",
    "as_coords",
    "class_groups",
    "class_label",
    "default_axis_titles",
    "for_presentation",
    "marker_size",
    "metric_label",
    "new_figure",
    "no_data",
    "set_axis_titles",
    "embedding_figure",
    "embedding_panel",
    "animation_figure",
    "method_axis_titles",
    "side_by_side_embeddings",
    "CURVE_PANELS",
    "compare_curves",
    "record_number",
    "training_curves",
    "compare_embeddings",
    "metrics_bar",
    "anchor_neighbours_figure",
    "block_mean",
    "compact_matrix",
    "mark_row",
    "rank_agreement_heatmap",
    "ranks_heatmap",
    "row_picker_trace",
    "shepard_figure",
    "coherence_histogram",
    "coherence_over_epochs",
    "per_class_coherence",
    "loss_history_figure",
    "loss_terms_figure",
    "soft_step_figure",
    "soft_step_functions",
    "soft_vs_hard_figure",
    "teaching_points_figure",
    "two_students_figure",
    "image_data_uri",
    "thumbnail_strip_html",
    "figure_html",
    "figure_image",
]
