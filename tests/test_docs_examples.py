"""The ```python blocks of the user docs run: a broken example fails CI.

Each page's blocks run in order in one namespace (a page is a script), in a temporary working directory.
Pages and the least number of blocks each must have (so a page whose blocks vanish, or whose fences break,
cannot pass by running nothing) are listed in PAGES.
"""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = {"docs/testing.md": 6, "docs/models.md": 6}
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str):
    """``(line, code)`` of every ```python block of a markdown text (line: 1-based line of the fence)."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


def run_page(path: str, text: str) -> dict:
    """Execute the page's blocks in order in one namespace; an error names the page and the block's line."""
    ns = {"__name__": "__docs__"}
    for line, code in python_blocks(text):
        try:
            exec(compile(code, f"{path}:{line}", "exec"), ns)
        except Exception as e:
            raise AssertionError(f"{path}, python block at line {line} raised {type(e).__name__}: {e}") from e
    return ns


def test_block_extraction_and_failure_reporting():
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nexit 1\n```\n```python\nassert x == 2, 'x is 1'\n```\n"
    blocks = python_blocks(text)
    assert [b[0] for b in blocks] == [2, 9] and blocks[0][1] == "x = 1\n"
    with pytest.raises(AssertionError, match=r"page.md, python block at line 9 raised AssertionError: x is 1"):
        run_page("page.md", text)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_docs_page_examples_run(page, tmp_path, monkeypatch, capsys):
    path = os.path.join(ROOT, page)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks = python_blocks(text)
    assert len(blocks) >= PAGES[page], f"{page} has {len(blocks)} python blocks, expected >= {PAGES[page]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(ROOT)
    run_page(page, text)
    assert capsys.readouterr().out  # the examples print what they show
