"""The Markdown documents render as written: every code block is the block its author fenced.

A closing fence with text after it (```` ``` It reports ...````) is no closing fence in Markdown
(CommonMark); the block then runs on and swallows the prose after it, on GitHub as anywhere.
Checked with markdown-it-py, a CommonMark parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([REPO / "README.md", REPO / "data" / "README.md",
                    *(REPO / "docs").glob("*.md")])


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_code_blocks_end_where_their_fences_say(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    blocks = [t for t in MarkdownIt("commonmark").parse(text)
              if t.type in ("fence", "code_block")]
    fence_lines = sum(1 for line in text.splitlines() if line.lstrip().startswith("```"))
    assert fence_lines == 2 * len([b for b in blocks if b.type == "fence"]), (
        "a fence line that opens or closes no block")
    for block in blocks:
        where = f"{document.name} line {block.map[0] + 1}"
        assert block.type == "fence", f"{where}: an indented code block, not a fenced one"
        assert not any(line.lstrip().startswith("```") for line in block.content.splitlines()), (
            f"{where}: the block holds a fence line: a closing fence with text after it?")
