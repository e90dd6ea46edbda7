"""Search, filter and tag the points of a table (one row per input): the exploration shared by the
Embeddings, Per-sample coherence and Diagnose pages. Pure functions on pandas tables; no Streamlit.

The search language (:func:`filter_mask`), terms separated by spaces, all must hold:

- ``12`` or ``#12``: the point with id 12; ``#10-20``: ids 10 to 20 (the table's id column);
- ``c_i<0.6``, ``c_i>=0.9``, ``class=3``, ``tags!=ok``: a column compared with a value (``<``,
  ``<=``, ``>``, ``>=``, ``=``, ``!=``); the column is named as in the table, case-insensitive,
  spaces written as ``_`` (``test_index=5``);
- ``class:seven``, ``site:Paris``: the column's text contains the word (case-insensitive);
- any other word: some text column (a class name, metadata, tags) contains it.

>>> import pandas as pd
>>> t = pd.DataFrame({"row": [0, 1, 2, 3], "class": ["a", "b", "a", "c"], "c_i": [0.9, 0.5, 0.7, 0.95]})
>>> filter_mask(t, "class=a c_i<0.8", id_column="row").tolist()
[False, False, True, False]
>>> filter_mask(t, "#1-2", id_column="row").tolist()
[False, True, True, False]
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

MAX_TAG_CHARS = 40
MAX_TAGS_CSV_BYTES = 5 * 2**20
_COMPARE = re.compile(r"^([^<>=!:]+?)\s*(<=|>=|!=|=|<|>)\s*(.+)$")
_CONTAINS = re.compile(r"^([^<>=!:]+?):(.+)$")
_ID = re.compile(r"^#?(\d+)$")
_ID_RANGE = re.compile(r"^#?(\d+)\s*-\s*(\d+)$")


class QueryError(ValueError):
    """A search that cannot be read; the message says what to write instead."""


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "_", str(name).strip().lower())


def _column(table: pd.DataFrame, name: str) -> str:
    wanted = _norm(name)
    for col in table.columns:
        if _norm(col) == wanted:
            return col
    known = ", ".join(_norm(c) for c in table.columns)
    raise QueryError(f"no column '{name}' to search; the columns are: {known}")


def _text_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]


def _compare(values: pd.Series, op: str, raw: str, col: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values):
        try:
            target = float(raw)
        except ValueError:
            if op in ("=", "!="):  # a number column compared with a word: no match (or all, for !=)
                return np.full(len(values), op == "!=")
            raise QueryError(f"'{col}' holds numbers: write a number after '{op}', e.g. {col}{op}0.5") from None
        x = values.to_numpy(dtype=float)
        out = {"<": x < target, "<=": x <= target, ">": x > target, ">=": x >= target,
               "=": np.isclose(x, target), "!=": ~np.isclose(x, target)}[op]
        return np.asarray(out, dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    raw = raw.strip().lower()
    if op == "=":
        return (text == raw).to_numpy() | _tag_hit(text, raw)
    if op == "!=":
        return ~((text == raw).to_numpy() | _tag_hit(text, raw))
    raise QueryError(f"'{col}' holds words: use '=', '!=' or ':' with it, e.g. {col}={raw}")


def _tag_hit(text: pd.Series, word: str) -> np.ndarray:
    """Whether ``word`` is one of the comma-separated items of each cell (the tags column)."""
    return text.map(lambda cell: word in [w.strip() for w in cell.split(",")]).to_numpy(dtype=bool)


def _term_mask(table: pd.DataFrame, term: str, id_column: str | None) -> np.ndarray:
    ids = table[id_column].to_numpy() if id_column is not None else np.arange(len(table))
    if m := _ID.match(term):
        return ids == int(m.group(1))
    if m := _ID_RANGE.match(term):
        lo, hi = sorted((int(m.group(1)), int(m.group(2))))
        return (ids >= lo) & (ids <= hi)
    if m := _COMPARE.match(term):
        col = _column(table, m.group(1))
        return _compare(table[col], m.group(2), m.group(3), _norm(col))
    if m := _CONTAINS.match(term):
        col = _column(table, m.group(1))
        word = m.group(2).strip().lower()
        return table[col].astype(str).str.lower().str.contains(word, regex=False).to_numpy(dtype=bool)
    word = term.lower()
    hit = np.zeros(len(table), dtype=bool)
    for col in _text_columns(table):
        hit |= table[col].astype(str).str.lower().str.contains(word, regex=False).to_numpy(dtype=bool)
    return hit


def _terms(query: str) -> list[str]:
    # "c_i < 0.6" is one term: glue comparison operators to their neighbours first
    glued = re.sub(r"\s*(<=|>=|!=|=|<|>|:)\s*", r"\1", query.strip())
    glued = re.sub(r"(#?\d+)\s*-\s*(\d+)", r"\1-\2", glued)
    return [t for t in glued.replace(",", " ").split() if t]


def filter_mask(table: pd.DataFrame, query: str, *, id_column: str | None = None) -> np.ndarray:
    """(n,) bool: the rows of ``table`` that match every term of ``query`` (all rows when empty).

    ``id_column``: the column of point ids (``#12``), else the row positions. Raises
    :class:`QueryError` with what to write instead when a term names no column or compares words
    with ``<``.
    """
    mask = np.ones(len(table), dtype=bool)
    for term in _terms(query or ""):
        mask &= _term_mask(table, term, id_column)
    return mask


# --------------------------------------------------------------------------- tags
Tags = Mapping[int, Iterable[str]]


def clean_tag(tag: str) -> str:
    """A tag as stored: stripped, inner spaces single, no commas; raises ValueError when empty or too long."""
    out = re.sub(r"\s+", " ", str(tag).replace(",", " ")).strip()
    if not out:
        raise ValueError("a tag needs at least one letter or digit")
    if len(out) > MAX_TAG_CHARS:
        raise ValueError(f"a tag has at most {MAX_TAG_CHARS} characters")
    return out


def add_tag(tags: Tags, ids: Iterable[int], tag: str) -> dict[int, tuple[str, ...]]:
    """``tags`` with ``tag`` added to each id of ``ids`` (a new dict; ids are point ids)."""
    tag = clean_tag(tag)
    out = {int(k): tuple(v) for k, v in tags.items()}
    for i in ids:
        have = out.get(int(i), ())
        if tag not in have:
            out[int(i)] = (*have, tag)
    return out


def remove_tag(tags: Tags, ids: Iterable[int], tag: str | None = None) -> dict[int, tuple[str, ...]]:
    """``tags`` with ``tag`` (every tag when None) taken off each id of ``ids`` (a new dict)."""
    out = {int(k): tuple(v) for k, v in tags.items()}
    for i in ids:
        kept = tuple(t for t in out.get(int(i), ()) if tag is not None and t != tag)
        if kept:
            out[int(i)] = kept
        else:
            out.pop(int(i), None)
    return out


def tags_column(tags: Tags, ids: Iterable[int]) -> list[str]:
    """The ``tags`` text (``"suspect, blurry"``; ``""`` when none) of each id, for a table column."""
    return [", ".join(tags.get(int(i), ())) for i in ids]


def tagged_table(table: pd.DataFrame, tags: Tags, *, id_column: str) -> pd.DataFrame:
    """The rows of ``table`` whose id has a tag, with a ``tags`` column: the list to export (CSV)."""
    ids = table[id_column].to_numpy()
    keep = np.array([int(i) in tags and bool(tuple(tags[int(i)])) for i in ids], dtype=bool)
    out = table.loc[keep].copy()
    out["tags"] = tags_column(tags, out[id_column].to_numpy())
    return out.reset_index(drop=True)


def read_tags_csv(data: bytes, *, id_column: str) -> dict[int, tuple[str, ...]]:
    """Tags back from an exported list (CSV with ``id_column`` and ``tags``): continue tagging later.

    Raises ValueError (what to change) when the file is too large, not CSV, or lacks the columns.
    """
    if len(data) > MAX_TAGS_CSV_BYTES:
        raise ValueError(f"the tag list is larger than {MAX_TAGS_CSV_BYTES // 2**20} MB; export a smaller one")
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"the tag list is not a CSV file ({exc})") from None
    if id_column not in df.columns or "tags" not in df.columns:
        raise ValueError(f"the tag list needs the columns '{id_column}' and 'tags' (as exported here); "
                         f"it has: {', '.join(map(str, df.columns))}")
    out: dict[int, tuple[str, ...]] = {}
    for raw_id, raw_tags in zip(df[id_column], df["tags"], strict=True):
        try:
            i = int(float(raw_id))
        except ValueError:
            raise ValueError(f"'{raw_id}' in column '{id_column}' is not a point id (a whole number)") from None
        for tag in str(raw_tags).split(","):
            if tag.strip():
                out = add_tag(out, [i], tag)
    return out
