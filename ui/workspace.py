"""Your workspace: the sidebar box that makes a session's runs reachable from any tab or device.

A session's runs and uploads live in a folder of its own, named by its session id (``sid``, in
the URL; ``ui.common.session_id``). A second tab opened without that ``sid`` is a new, empty
session. This box (drawn on every page by ``ui.common.page``) offers two ways back to the runs:

- **the link** of this session (the page's address with its ``sid``), to open in another tab or
  on another device — said plainly: whoever has it sees this session's runs and uploads;
- **a workspace name**: a passphrase a person picks (``perco_viz.sessions.workspace_id``, at least
  12 characters) becomes the session id, so typing the same name anywhere opens the same runs;
  the tab's runs and uploads can come along (``perco_viz.sessions.move_session``).

Other sessions still never list a session's runs or uploads unless they know its link or name.
"""

from __future__ import annotations

import streamlit as st

from perco_viz import sessions
from ui import common, view_state

FORM_KEY = "workspace-form"
NAME_KEY = "workspace-name"
BRING_KEY = "workspace-bring"
OPEN_KEY = "workspace-open"
NAMED_KEY = "_workspace_named"  # session_state: the sid this tab opened by a name (to say so)
ERROR_KEY = "_workspace_error"  # session_state: why the last name was refused (shown once)
MOVED_KEY = "_workspace_moved"  # session_state: what moved along into the workspace (shown once)


def switch_session(sid: str) -> None:
    """Make ``sid`` this tab's session (its runs, uploads and live training), in the URL too,
    and forget what belonged to the previous one; the caller reruns the page."""
    st.session_state.sid = sid
    st.query_params["sid"] = sid
    for key in ("live_run_id", "selected_run", common.LAST_RUN):
        st.session_state.pop(key, None)
    if "run" in st.query_params:  # a run of the previous session means nothing here
        del st.query_params["run"]


def _open_named() -> None:
    """The form's callback (before the page runs): the name becomes the session id."""
    name = st.session_state.get(NAME_KEY, "")
    try:
        sid = sessions.workspace_id(name)
    except sessions.SessionError as exc:
        st.session_state[ERROR_KEY] = str(exc)
        return
    st.session_state[NAME_KEY] = ""  # the passphrase does not stay on screen
    if st.session_state.get(BRING_KEY):
        moved, stayed = sessions.move_session(common.session_root(), common.sessions_dir() / sid)
        st.session_state[MOVED_KEY] = (moved, stayed)
    st.session_state[BRING_KEY] = False  # a workspace's runs move on only when asked again
    switch_session(sid)
    st.session_state[NAMED_KEY] = sid
    st.session_state["_workspace_just_opened"] = True


def _ttl_text() -> str:
    try:
        hours = sessions.ttl_seconds() / 3600
    except sessions.SessionError:
        return ""
    return f" A workspace nobody opens for {hours:g} hours is deleted with its runs."


def sidebar() -> None:
    """The "Your workspace" expander: this session's link, and a name to open the same runs anywhere."""
    from perco_viz.runs import list_runs

    sid = common.session_id()
    named = st.session_state.get(NAMED_KEY) == sid
    own = len(list_runs(common.session_root()))
    with st.expander("Your workspace", icon=":material/workspaces:"):
        if named:
            st.caption(":material/check_circle: This tab shows the runs of a **named workspace**: type the same name "
                       "in any tab or on any device to open them.")
        st.markdown("**Open these runs elsewhere**")
        if common.presenting():
            st.caption("The link is hidden in presentation mode: it would show your runs to the room.")
        else:
            st.code(view_state.view_url({"sid": sid}), language=None, wrap_lines=True)
            st.caption(":material/warning: Whoever has this link sees your runs and uploads: share it only with "
                       "people you trust.")
        st.markdown("**Name your workspace**")
        with st.form(FORM_KEY, border=False):
            st.text_input("Workspace name", key=NAME_KEY, type="password", max_chars=sessions.WORKSPACE_MAX_CHARS,
                          placeholder=f"at least {sessions.WORKSPACE_MIN_CHARS} characters",
                          help="Like a passphrase: the same name opens the same runs in any tab or on any device. "
                               "Anyone who guesses it sees your runs and uploads, so use at least "
                               f"{sessions.WORKSPACE_MIN_CHARS} characters — e.g. three unrelated words.")
            if own:
                st.session_state.setdefault(BRING_KEY, not named)  # on in a new tab's session
                st.checkbox(f"Bring this tab's {own} run(s) and uploads along", key=BRING_KEY,
                            help="Moves them into the workspace (a run being trained stays here).")
            st.form_submit_button("Open workspace", key=OPEN_KEY, on_click=_open_named, icon=":material/login:")
        moved, stayed = st.session_state.pop(MOVED_KEY, ([], []))
        if named and st.session_state.pop("_workspace_just_opened", False):
            st.toast("Workspace opened" + (f": {len(moved)} run(s) brought along." if moved else "."),
                     icon=":material/workspaces:")
        if moved:
            st.success(f"Brought along: {', '.join(moved)}.", icon=":material/drive_file_move:")
        for line in stayed:
            st.warning(line[:1].upper() + line[1:] + ".", icon=":material/warning:")
        error = st.session_state.pop(ERROR_KEY, None)
        if error:
            st.error(error[:1].upper() + error[1:], icon=":material/key_off:")
        st.caption("Runs you leave behind stay in this tab's previous session (keep its link)." + _ttl_text())
