"""Search, filter and tag points: the widgets shared by Embeddings, Per-sample coherence and
Diagnose (the logic is ``perco_viz.analysis.explore``).

- :func:`search` — a search box over a table of points (one row per point, an id column): the
  mask of the rows that match, in the URL as ``q=`` so a link keeps it;
- :func:`tags_of` / :func:`tag_panel` — this session's tags of the points of one data set
  (``scope``: the run's path, an upload's digest), tag/untag rows, export the tagged list as CSV
  and import one back to go on tagging another day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz.analysis import explore

SEARCH_HELP = ("Terms separated by spaces, all must hold: `12` or `#12` (a point), `#10-20` (a range), "
               "`c_i<0.6` (a column compared with a value: < <= > >= = !=), `class=3`, `tags=suspect`, "
               "`site:paris` (a column contains a word), or any word found in a text column.")
_TAGS = "_point_tags"  # session_state: {scope: {point id: (tag, ...)}}


def search(table: pd.DataFrame, key: str, *, id_column: str, label: str = "Search points",
           placeholder: str = "e.g. c_i<0.7  class=3  #12  tags=suspect", url: bool = True) -> np.ndarray:
    """A search box over ``table``; returns the (n,) bool mask of the rows that match (all when
    empty, and when the search cannot be read — then a message says what to write instead).
    ``url``: keep the search in the URL (``q=``; one search box per page)."""
    from ui import view_state

    if url:
        view_state.seed(key, "q")
    query = st.text_input(label, key=key, placeholder=placeholder, help=SEARCH_HELP)
    if url:
        view_state.publish("q", query or None)
    try:
        mask = explore.filter_mask(table, query, id_column=id_column)
    except explore.QueryError as exc:
        st.warning(f"This search cannot be read: {exc}.", icon=":material/search_off:")
        return np.ones(len(table), dtype=bool)
    if query:
        st.caption(f"{int(mask.sum()):,} of {len(table):,} points match.")
    return mask


def tags_of(scope: str) -> dict[int, tuple[str, ...]]:
    """This session's tags of the points of ``scope`` ({point id: (tag, ...)}), empty at first."""
    return st.session_state.setdefault(_TAGS, {}).get(scope, {})


def _set_tags(scope: str, tags: dict[int, tuple[str, ...]]) -> None:
    st.session_state.setdefault(_TAGS, {})[scope] = tags


def with_tags(table: pd.DataFrame, scope: str, *, id_column: str) -> pd.DataFrame:
    """``table`` with a ``tags`` column (this session's tags of each point) — searchable (``tags=x``)."""
    out = table.copy()
    out["tags"] = explore.tags_column(tags_of(scope), out[id_column].to_numpy())
    return out


def tag_panel(table: pd.DataFrame, scope: str, key: str, *, id_column: str, chosen: np.ndarray,
              file_name: str = "tagged-points.csv") -> None:
    """Tag the ``chosen`` point ids of ``table`` (the selected rows, or every match of the search),
    untag them, download the tagged list as CSV, import a list exported before.

    ``table``: one row per point, with ``id_column``; ``chosen``: (k,) point ids.
    """
    tags = tags_of(scope)
    chosen = np.asarray(chosen, dtype=np.int64)
    # a row that wraps (buttons at their own width): nothing is cut on a narrow screen
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
    name = row.text_input("Tag", value="suspect", key=f"{key}-name", max_chars=explore.MAX_TAG_CHARS,
                             help="A word to mark points with (suspect, mislabeled, duplicate…). Tagged points "
                                  "can be searched (`tags=suspect`) and exported as a CSV list.", width=220)
    what = f"{len(chosen):,} point{'s' if len(chosen) != 1 else ''}"
    if row.button(f"Tag {what}", key=f"{key}-add", disabled=len(chosen) == 0):
        try:
            _set_tags(scope, explore.add_tag(tags, chosen, name))
            st.rerun()
        except ValueError as exc:
            st.warning(f"Not tagged: {exc}.")
    if row.button(f"Untag {what}", key=f"{key}-remove", disabled=len(chosen) == 0,
                     help="Takes this tag off the chosen points (all their tags when the Tag box is empty)."):
        _set_tags(scope, explore.remove_tag(tags, chosen, name.strip() or None))
        st.rerun()
    tagged = explore.tagged_table(table, tags, id_column=id_column)
    row.download_button(f"Tagged list ({len(tagged):,}) CSV", tagged.to_csv(index=False).encode(),
                           file_name=file_name, mime="text/csv", key=f"{key}-export", disabled=tagged.empty,
                           icon=":material/download:", on_click="ignore")
    with st.expander("Import a tagged list"):
        upload = st.file_uploader("A CSV exported here (columns " f"'{id_column}' and 'tags')", type=["csv"],
                                  key=f"{key}-import", max_upload_size=max(1, explore.MAX_TAGS_CSV_BYTES // 2**20))
        if upload is not None and st.button("Add these tags", key=f"{key}-import-go"):
            try:
                imported = explore.read_tags_csv(upload.getvalue(), id_column=id_column)
            except ValueError as exc:
                st.warning(f"Not imported: {exc}.")
            else:
                merged = dict(tags)
                for i, ts in imported.items():
                    for t in ts:
                        merged = explore.add_tag(merged, [i], t)
                _set_tags(scope, merged)
                st.rerun()
