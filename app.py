"""perco_viz — home: what perception coherence is, and the demo in one click."""

from __future__ import annotations

import streamlit as st

from ui import common


@st.cache_data(show_spinner=False)
def _two_students():
    from perco_viz.analysis.teaching import two_students
    from perco_viz.figures import two_students_figure

    return two_students_figure(two_students())


common.page("perco_viz", "Watch a small student learn to perceive its inputs the way a large teacher does.")

left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(
        """
#### The idea in one question
Pick any input — call it the **anchor** — and two others. *Which of the two is closer to the anchor?*
A teacher network answers this for every triple of inputs; its answers are its **perception**.
A student is **coherent** with its teacher when it answers the same way. It does **not** have to
copy the teacher's distances, only their **order**: a weak student may stretch, squeeze or bend
the teacher's geometry, as long as what is nearer stays nearer.

- **PC** (perception coherence): the share of all (anchor, pair) questions answered alike.
  1 = same perception, 0.5 = chance, 0 = reversed.
- **c<sub>i</sub>** (per-sample coherence): the same share for one anchor — which inputs the student
  perceives wrongly.
- The **coherence loss** makes the student's (soft) ranking of distances match the teacher's.
        """,
        unsafe_allow_html=True,
    )
    live = common.live_run()
    running = live is not None and live.alive
    if st.button("Run the demo", icon=":material/play_arrow:", type="primary", disabled=running, key="home-demo",
                 help="Digits (1,797 handwritten 8×8 images from scikit-learn), a small CNN teacher "
                      "trained here in seconds, an 8-d student, the coherence loss, 20 epochs."):
        if common.start_run(common.demo_config()):
            st.switch_page("pages/2_Distill.py")
    if running:
        st.info("A training of yours is running.")
        st.page_link("pages/2_Distill.py", label="Watch it live →", icon=":material/monitoring:")
    st.caption("Built-in demo: digits · CNN teacher (128-d) · MLP student (8-d) · coherence loss · CPU or GPU.")

with right:
    st.markdown("#### Where to go")
    common.page_links([(script, f"{label} — {blurb}", icon) for script, label, icon, blurb in common.PAGES[1:]])
    st.caption(
        "Method: Nguyen et al., *Feature Representation Transferring to Lightweight Models via "
        "Perception Coherence*, arXiv:2505.06595 (TMLR 2026)."
    )

common.show_figure(_two_students(), key="home-two-students", caption=(
    "Student A stretches and turns the teacher's picture, yet from almost every point the others keep their order of "
    "nearness: a high PC, and the coherence loss is content. Student B keeps the scale but shuffles who is near whom: "
    "PC falls toward 0.5, chance."))
