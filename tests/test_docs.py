"""The documentation as a reader walks it: every relative link in README.md and docs/*.md leads
to a file (and heading) that exists, every docs page is reachable from the README, and the
README stays short enough to read on a few screens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_BYTES = 15_000

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the text may run over a line break
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text less its code: links in code blocks and code spans are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _links(page: Path) -> Iterator[str]:
    for target in LINK.findall(_prose(page.read_text())):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            yield target


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / path).resolve() if path else page), anchor


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, anchor = _resolve(page, target)
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading with that anchor in {path.name}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for target in _links(page):
            path, _ = _resolve(page, target)
            if path.suffix == ".md" and path.exists() and path not in reached:
                reached.add(path)
                todo.append(path)
    unreached = [p.name for p in DOCS.glob("*.md") if p.resolve() not in reached]
    assert not unreached, f"docs pages no link from README.md leads to: {unreached}"


def test_the_link_checker_sees_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## Its `second` part?\n")
    page.write_text("[ok](other.md#its-second-part) [gone](missing.md) [bad](other.md#nope)\n"
                    "`[not a link](missing.md)` [web](https://example.com) [top](#title)\n"
                    "# Title\n")
    targets = list(_links(page))
    assert targets == ["other.md#its-second-part", "missing.md", "other.md#nope", "#title"]
    assert "its-second-part" in _anchors(tmp_path / "other.md")
    assert not _resolve(page, "missing.md")[0].exists()
    assert "nope" not in _anchors(tmp_path / "other.md")


def test_readme_fits_on_a_few_screens() -> None:
    """Depth belongs in docs/ (docs/README.md is the index); the README keeps what a user
    reads first."""
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; move depth into docs/"
