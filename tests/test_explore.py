"""The search language and point tags of perco_viz.analysis.explore (Embeddings, Per-sample, Diagnose)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perco_viz.analysis import explore


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"row": [10, 11, 12, 13, 14], "class": ["cat", "dog", "cat", "bird", "dog"],
                         "c_i": [0.91, 0.52, 0.70, 0.95, 0.61], "test index": [3, 4, 5, 6, 7],
                         "site": ["Paris", "Lyon", "paris-sud", "Nice", "Lyon"]})


@pytest.mark.parametrize(("query", "rows"), [
    ("", [10, 11, 12, 13, 14]),
    ("12", [12]), ("#12", [12]), ("#11-13", [11, 12, 13]), ("#13 - 11", [11, 12, 13]),
    ("c_i<0.7", [11, 14]), ("c_i <= 0.70", [11, 12, 14]), ("C_I>0.9", [10, 13]), ("c_i>=0.95", [13]),
    ("class=cat", [10, 12]), ("class!=cat", [11, 13, 14]), ("class=CAT c_i<0.8", [12]),
    ("site:paris", [10, 12]), ("test_index=5", [12]), ("lyon", [11, 14]), ("dog, c_i>0.6", [14]),
    ("c_i=0.52", [11]), ("class=3", []),
])
def test_filter_mask(table, query, rows):
    mask = explore.filter_mask(table, query, id_column="row")
    assert mask.dtype == bool and mask.shape == (5,)
    assert table["row"][mask].tolist() == rows


def test_ids_are_positions_without_an_id_column(table):
    assert explore.filter_mask(table, "#1-2").tolist() == [False, True, True, False, False]


@pytest.mark.parametrize(("query", "says"), [
    ("colour=red", "no column 'colour'"), ("class<3", "holds words"), ("c_i<high", "holds numbers"),
])
def test_unreadable_searches_say_what_to_write(table, query, says):
    with pytest.raises(explore.QueryError, match=says):
        explore.filter_mask(table, query, id_column="row")


def test_tags_add_remove_and_search(table):
    tags = explore.add_tag({}, [11, 14], "  sus   pect, ")
    assert tags == {11: ("sus pect",), 14: ("sus pect",)}
    tags = explore.add_tag(tags, [14, 12], "blurry")
    assert tags[14] == ("sus pect", "blurry") and explore.add_tag(tags, [14], "blurry") == tags
    tagged = table.assign(tags=explore.tags_column(tags, table["row"]))
    assert tagged["row"][explore.filter_mask(tagged, "tags=blurry", id_column="row")].tolist() == [12, 14]
    assert tagged["row"][explore.filter_mask(tagged, "tags!=blurry", id_column="row")].tolist() == [10, 11, 13]
    tags = explore.remove_tag(tags, [14], "sus pect")
    assert tags[14] == ("blurry",)
    assert explore.remove_tag(tags, [14, 12]) == {11: ("sus pect",)}  # every tag when none is named


@pytest.mark.parametrize("bad", ["", "   ", ",", "x" * (explore.MAX_TAG_CHARS + 1)])
def test_bad_tags_are_refused(bad):
    with pytest.raises(ValueError, match="tag"):
        explore.add_tag({}, [1], bad)


def test_tagged_list_round_trips_through_csv(table):
    tags = explore.add_tag(explore.add_tag({}, [11, 13], "suspect"), [13], "mislabeled")
    out = explore.tagged_table(table, tags, id_column="row")
    assert out["row"].tolist() == [11, 13] and out["tags"].tolist() == ["suspect", "suspect, mislabeled"]
    assert explore.read_tags_csv(out.to_csv(index=False).encode(), id_column="row") == tags


@pytest.mark.parametrize(("data", "says"), [
    (b"row,label\n1,a\n", "needs the columns"), (b"row,tags\nabc,x\n", "not a point id"),
    (b"\xff\xfe\x00junk", "CSV|columns"), (b"x" * (explore.MAX_TAGS_CSV_BYTES + 1), "larger than"),
])
def test_bad_tag_lists_say_what_to_change(data, says):
    with pytest.raises(ValueError, match=says):
        explore.read_tags_csv(data, id_column="row")


def test_mask_of_an_empty_table():
    assert explore.filter_mask(pd.DataFrame({"row": np.array([], dtype=int)}), "#3", id_column="row").shape == (0,)
