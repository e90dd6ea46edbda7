"""The shareable view: what a page shows (run, snapshot, anchor, projection, colouring...) lives
in the URL's query parameters, so a link reopens the same view — for a teacher's slide or a bug report.

A page does, for each widget that is part of its view::

    view_state.seed("ra-anchor", "anchor", int)        # before the widget: a new URL value wins
    anchor = st.number_input("Anchor", key="ra-anchor")
    view_state.publish("anchor", anchor)               # after: the URL follows the widget

``seed`` applies a URL value when it is *new* to this session (a link opened, a link from
another page followed) or the widget is new on the page; never again the value this session
published itself while the widget is there, so the widget stays the person's to change. Parameters in use: ``sid`` (the session, ``ui.common.session_id``), ``run``,
``snap``, ``anchor``, ``proj``, ``dim``, ``color``, ``present``, ``q`` (a search), ``row`` (a point).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

_SEEN = "_view_state_seen"  # session_state: {param: the URL value this session last applied or wrote}
MAX_VALUE_CHARS = 200  # longer URL values are ignored (a link is not a place for data)


def _seen() -> dict[str, str]:
    return st.session_state.setdefault(_SEEN, {})


def url_value(param: str) -> str | None:
    """The URL's value of ``param`` (a str, at most :data:`MAX_VALUE_CHARS`), or None."""
    raw = st.query_params.get(param)
    if not isinstance(raw, str) or len(raw) > MAX_VALUE_CHARS:
        return None
    return raw


def seed(key: str, param: str, parse: Callable[[str], Any] = str, *,
         valid: Callable[[Any], bool] | None = None) -> bool:
    """Set ``st.session_state[key]`` from the URL's ``param`` when that value is new to this
    session, or when the widget ``key`` is not there yet (a page opened, with the URL of a link).

    Call it before creating the widget ``key``. A value that ``parse`` rejects (ValueError,
    TypeError) or ``valid`` refuses is ignored (the link was edited or is from an older run).
    Returns True when it set the key.
    """
    raw = url_value(param)
    seen = _seen()
    if raw is None or (seen.get(param) == raw and key in st.session_state):
        return False
    seen[param] = raw
    try:
        value = parse(raw)
    except (TypeError, ValueError, OverflowError):
        return False
    if valid is not None and not valid(value):
        return False
    st.session_state[key] = value
    return True


def publish(param: str, value: Any) -> None:
    """Write ``value`` (as text) to the URL's ``param``; ``None`` removes it."""
    seen = _seen()
    if value is None:
        seen.pop(param, None)
        if param in st.query_params:
            del st.query_params[param]
        return
    text = _text(value)
    seen[param] = text
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_flag(raw: str) -> bool:
    """``1/true/yes/on`` → True, ``0/false/no/off`` → False; anything else raises ValueError."""
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def current_params() -> dict[str, str]:
    """The URL's query parameters now (one value each)."""
    return {k: st.query_params.get(k) for k in st.query_params}


def page_link_params(*, keep: tuple[str, ...] = ("sid", "run", "present"), **params: Any) -> dict[str, str]:
    """Query parameters for a link to another page of this app (``st.page_link(...,
    query_params=...)``): the session, the run and the presentation mode of this view (``keep``),
    plus ``params`` (None values left out)."""
    now = current_params()
    out = {k: now[k] for k in keep if now.get(k)}
    out.update({k: _text(v) for k, v in params.items() if v is not None})
    return out


def view_url(params: Mapping[str, Any] | None = None, *, drop: tuple[str, ...] = ()) -> str:
    """The URL of this page with ``params`` (default: the URL's own), less the names in ``drop``."""
    base = urlsplit(str(st.context.url or ""))
    query = {k: _text(v) for k, v in (current_params() if params is None else params).items()
             if v is not None and k not in drop}
    return urlunsplit((base.scheme, base.netloc, base.path, urlencode(query), ""))


def share_box(*, own_run: bool) -> None:
    """A "Share this view" popover: the link that reopens this page as it is now.

    ``own_run``: the view shows a run of this session; its link must carry the session id (the
    run is only readable there), and whoever opens it sees this session's runs and uploads — said
    in the box. For a shared run (or no run) the link leaves the session id out.
    """
    with st.popover("Share this view", icon=":material/link:", help="A link that reopens this page as you see it now: "
                    "run, snapshot, anchor, projection and colours."):
        link = view_url(drop=() if own_run else ("sid",))
        st.code(link, language=None, wrap_lines=True)
        if own_run:
            st.caption("This run is one of **yours**: the link carries your session, so whoever opens it sees your "
                       "runs and uploads. Share it only with people you trust, or share a run from the shared folder.")
        else:
            st.caption("Copy it (the icon at its right). It opens the same view in a new session.")
