"""The guide runs: every ```python block of docs/**/*.md is executed, so no page can rot.

Each page's blocks run in order in one namespace (a fresh one per page), in a temporary working
directory. A ```text block that directly follows a python block (only blank lines between) is the
output that block prints, and must match it exactly (trailing spaces and surrounding blank lines
aside); a python block with no text block after it must print nothing. So every number shown in
the guide is the one its code computes on this run.

Writing a page: ``python tests/test_docs.py docs/questions/07-vocabulary.md`` runs it and prints
each block's actual output, to paste into its text block.
"""

import contextlib
import difflib
import io
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
QUESTIONS = DOCS / "questions"
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    """One python block of a page, with the output its page shows for it (None: shows none)."""

    code: str
    line: int  # line of the opening fence in the page
    expected: str | None


def blocks_of(markdown: str) -> list[Block]:
    """The python blocks of a markdown text in order, each with the text block that follows it."""
    fences = [
        (m.group(1), m.group(2), markdown.count("\n", 0, m.start()) + 1, m.start(), m.end())
        for m in FENCE.finditer(markdown)
    ]
    blocks = []
    for i, (language, body, line, _, end) in enumerate(fences):
        if language != "python":
            continue
        expected = None
        if i + 1 < len(fences):
            next_language, next_body, _, next_start, _ = fences[i + 1]
            if next_language == "text" and not markdown[end:next_start].strip():
                expected = next_body
        blocks.append(Block(body, line, expected))
    return blocks


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def _numbered(code: str) -> str:
    return "\n".join(f"{i:4} | {line}" for i, line in enumerate(code.splitlines(), 1))


def run_page(name: str, markdown: str, show: bool = False) -> list[str]:
    """Run a page's python blocks in one fresh namespace; raise ``AssertionError`` naming the page
    and block on an error or on output that differs from the page's. Returns each block's output."""
    namespace: dict = {"__name__": "__main__"}
    outputs = []
    for number, block in enumerate(blocks_of(markdown), 1):
        where = f"{name}, python block {number} (line {block.line})"
        stdout = io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout):
                exec(compile(block.code, f"<{where}>", "exec"), namespace)
        except Exception:
            raise AssertionError(
                f"{where} raised:\n{traceback.format_exc()}\nthe block:\n{_numbered(block.code)}"
            ) from None
        actual = _normalise(stdout.getvalue())
        outputs.append(actual)
        if show:
            print(f"--- {where}\n{actual}", file=sys.__stdout__, flush=True)
            continue
        expected = _normalise(block.expected) if block.expected is not None else ""
        if actual != expected:
            if block.expected is None:
                raise AssertionError(
                    f"{where} printed output but the page shows none after it (add a ```text block):\n{actual}"
                )
            diff = "\n".join(
                difflib.unified_diff(
                    expected.splitlines(), actual.splitlines(), "page shows", "block printed", lineterm=""
                )
            )
            raise AssertionError(f"{where}: printed output differs from the page's text block:\n{diff}")
    return outputs


PAGES = sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_runs_and_prints_what_it_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a page writes land in a temporary folder
    run_page(page.name, page.read_text(encoding="utf-8"))


def test_the_guide_has_eighteen_questions_each_linked_from_the_index():
    questions = sorted(QUESTIONS.glob("*.md"))
    assert [int(p.name[:2]) for p in questions] == list(range(1, 19))
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#\s]+)", index))
    for page in [*questions, DOCS / "mlm-vs-plm.md"]:
        assert str(page.relative_to(DOCS)) in linked, f"docs/README.md does not link {page.name}"
    for page in PAGES:  # every relative link of the guide leads to a file
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(DOCS)} links {target}, which is missing"
    for page in questions:
        assert blocks_of(page.read_text(encoding="utf-8")), f"{page.name} has no python block to run"


def test_runner_catches_errors_and_wrong_output():
    good = "```python\nx = 6 * 7\nprint(x)\n```\n\n```text\n42\n```\n\n```python\nassert x == 42\n```\n"
    assert run_page("good.md", good) == ["42", ""]
    with pytest.raises(AssertionError, match=r"wrong\.md, python block 1 .*differs"):
        run_page("wrong.md", good.replace("42\n```\n\n```python", "41\n```\n\n```python"))
    with pytest.raises(AssertionError, match=r"(?s)raises\.md, python block 2 \(line 10\) raised:.*ZeroDivisionError"):
        run_page("raises.md", good.replace("assert x == 42", "x / 0"))
    with pytest.raises(AssertionError, match="page shows none"):
        run_page("unshown.md", "```python\nprint('hidden')\n```\n")


if __name__ == "__main__":  # authoring aid: run pages and print what each block prints
    for path in sys.argv[1:] or map(str, PAGES):
        started = time.perf_counter()
        page = Path(path).resolve()
        run_page(page.name, page.read_text(encoding="utf-8"), show=True)
        print(f"=== {path}: {time.perf_counter() - started:.1f} s", file=sys.__stdout__)
