"""The documentation stands alone: every relative link of README.md and docs/*.md leads to a file
of this repository (a newcomer once followed the README to a design file that is not in it)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_stay_in_the_repository(doc):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor of the same page
        path = (doc.parent / target.split("#")[0]).resolve()
        assert ROOT in path.parents or path == ROOT, f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"


def test_the_check_sees_a_link_out():
    assert LINK.findall("see [DESIGN](../shared/DESIGN.md) and [x](docs/a.md \"t\")") == ["../shared/DESIGN.md",
                                                                                       "docs/a.md"]
