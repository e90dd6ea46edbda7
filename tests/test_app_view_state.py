"""The shareable view (ui/view_state.py) and presentation mode, driven as pages: a link's values
become the widgets', the widgets' values go back to the URL, and a person's later change wins."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


def _script():
    import streamlit as st

    from ui import view_state

    view_state.seed("k", "anchor", int, valid=lambda v: 0 <= v < 100)
    value = st.number_input("Anchor", min_value=0, max_value=99, value=1, key="k")
    view_state.publish("anchor", value)
    st.markdown(view_state.view_url(drop=("sid",)))


def test_a_link_value_is_applied_once_then_the_widget_is_the_persons():
    at = AppTest.from_function(_script)
    at.query_params["anchor"] = "12"
    at.run()
    assert at.number_input(key="k").value == 12
    at.number_input(key="k").set_value(30).run()
    assert at.number_input(key="k").value == 30  # the old URL value does not come back
    assert at.query_params["anchor"] == "30"


def test_a_link_value_that_does_not_fit_is_ignored():
    at = AppTest.from_function(_script)
    at.query_params["anchor"] = "500"
    at.run()
    assert at.number_input(key="k").value == 1 and not at.exception
    at = AppTest.from_function(_script)
    at.query_params["anchor"] = "twelve"
    at.run()
    assert at.number_input(key="k").value == 1 and not at.exception


def test_without_a_link_the_widget_default_goes_to_the_url():
    at = AppTest.from_function(_script).run()
    assert at.number_input(key="k").value == 1
    assert at.query_params["anchor"] == "1"


def test_run_and_snapshot_come_from_the_url(app_env, finished_run):
    """A link to Per-sample coherence with run= and snap= opens that run at that snapshot."""
    from perco_viz.runs import RunDir

    indices = RunDir(finished_run.path).snapshot_indices()
    assert len(indices) >= 3
    at = AppTest.from_file(str(ROOT / "pages" / "5_Per_sample_coherence.py"), default_timeout=120)
    at.query_params["run"] = f"shared/{finished_run.path.name}"
    at.query_params["snap"] = str(indices[1])
    at.run()
    assert not at.exception
    slider = at.select_slider(key="psc-snap") if any(s.key == "psc-snap" for s in at.select_slider) \
        else at.select_slider[0]
    assert slider.value == 1  # the position of snapshot indices[1]
    assert at.query_params["snap"] == str(indices[1])
    assert at.query_params["run"] == f"shared/{finished_run.path.name}"


def test_presentation_mode_from_the_url_hides_downloads(app_env):
    at = AppTest.from_file(str(ROOT / "pages" / "5_Per_sample_coherence.py"), default_timeout=120)
    at.run()
    assert not at.exception and at.toggle(key="present").value is False
    downloads = len(at.get("download_button"))
    assert downloads > 0
    at = AppTest.from_file(str(ROOT / "pages" / "5_Per_sample_coherence.py"), default_timeout=120)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception and at.toggle(key="present").value is True
    assert len(at.get("download_button")) < downloads
    assert any("font-size: 20px" in str(getattr(h, "proto", "")) for h in at.get("html"))


def _two_pages():
    import streamlit as st

    from ui import view_state

    if st.session_state.get("on_b"):  # "page B": the widget is new here, the URL carries the value
        view_state.seed("b", "anchor", int)
        st.number_input("B", min_value=0, max_value=99, key="b")
        return
    view_state.seed("a", "anchor", int)
    value = st.number_input("A", min_value=0, max_value=99, value=1, key="a")
    view_state.publish("anchor", value)


def test_a_widget_new_on_a_page_takes_the_urls_value_even_if_this_session_wrote_it():
    at = AppTest.from_function(_two_pages)
    at.run()
    at.number_input(key="a").set_value(7).run()
    at.session_state["on_b"] = True
    at.run()
    assert at.number_input(key="b").value == 7
