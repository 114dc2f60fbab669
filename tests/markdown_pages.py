"""The README and the pages of docs/ as tests read them: headings, fenced code blocks and links."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]

_HEADING = re.compile(r"^(#{1,6}) (.+)$")
_NOTE = re.compile(r"^<!-- (.*) -->$")
# [text](target) and ![alt](target); a target ends at whitespace or the closing parenthesis.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


class Block(NamedTuple):
    """One fenced code block: where it is, its language, its text and the comment right above it."""

    page: str
    heading: str
    line: int
    language: str
    code: str
    note: str


class Link(NamedTuple):
    """One Markdown link outside code: the page and line it is on, and its target as written."""

    page: str
    line: int
    target: str


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def name(page: Path) -> str:
    """A page's path from the repository's root, as the tests name it: README.md, docs/client.md."""
    return page.relative_to(REPO).as_posix()


def headings(page: Path) -> list[str]:
    """The page's headings outside code blocks, as written with their #s."""
    return [line for line, _ in _prose(page) if _HEADING.match(line)]


def blocks(page: Path) -> list[Block]:
    """Every fenced code block of the page, in order."""
    found: list[Block] = []
    code: list[str] = []
    heading, note, language, start = "", "", "", 0
    inside = False
    previous = ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if inside:
            if line == "```":
                found.append(Block(name(page), heading, start, language, "".join(code), note))
                inside = False
            else:
                code.append(line + "\n")
        elif line.startswith("```"):
            inside, language, start, code = True, line[3:].strip(), number, []
            match = _NOTE.match(previous)
            note = match.group(1) if match else ""
        elif _HEADING.match(line):
            heading = line
        previous = line
    assert not inside, f"{name(page)}:{start}: a code block is never closed"
    return found


def section_blocks(page: str, heading: str, language: str) -> list[Block]:
    """The code blocks in language under heading (until the next heading) of page."""
    found = [block for block in blocks(REPO / page) if block.heading == heading and block.language == language]
    assert found, f"{page} has no {language} block under {heading!r}"
    return found


def python_block(page: str, heading: str) -> str:
    """The first ```python block under heading of page, as written."""
    return section_blocks(page, heading, "python")[0].code


def links(page: Path) -> list[Link]:
    """The links of the page, leaving out code blocks and inline code."""
    return [
        Link(name(page), number, target)
        for line, number in _prose(page)
        for target in _LINK.findall(_INLINE_CODE.sub("", line))
    ]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _HEADING.sub(r"\2", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of the page's headings; a repeated one gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(page):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _prose(page: Path) -> list[tuple[str, int]]:
    """The page's lines outside fenced code blocks, with their numbers."""
    kept = []
    inside = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            kept.append((line, number))
    return kept
