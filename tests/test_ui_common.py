"""ui.common's helpers that need no running app: the one parser of plotly selection events."""

from __future__ import annotations

import pytest

from ui import common


@pytest.mark.parametrize("event", [None, {}, {"selection": {}}, {"selection": {"points": []}}, "x", 3,
                                   {"selection": {"points": None}}])
def test_selected_points_empty(event):
    assert common.selected_points(event) == []


def test_selected_points_normalises_customdata():
    event = {"selection": {"points": [{"customdata": [5]}, {"customdata": {"1": 0.5, "0": 3}}, {"customdata": 7},
                                      {"x": 1, "curve_number": 0, "point_index": 4}, "junk"],
                           "box": [], "lasso": []}}
    points = common.selected_points(event)
    assert [p.get("customdata") for p in points] == [[5], [3, 0.5], 7, None]
    assert points[3]["point_index"] == 4
    assert [common.point_id(p) for p in points] == [5, 3, 7, None]
    assert event["selection"]["points"][1]["customdata"] == {"1": 0.5, "0": 3}  # the event is not changed


def test_selected_points_of_attribute_objects():
    class Selection:
        points = [{"customdata": [2.0]}]

    class Event:
        selection = Selection()

    assert [common.point_id(p) for p in common.selected_points(Event())] == [2]


@pytest.mark.parametrize("custom", ["x", [], None, float("nan"), [float("inf")]])
def test_point_id_not_a_number(custom):
    assert common.point_id({"customdata": custom}) is None
