"""The documentation's links and pictures lead somewhere, and the README gives the two quick-start commands.

README.md keeps what a newcomer needs and links to benchmarks/README.md and docs/ for the rest, so a file
moved or a heading renamed would leave a dead link; these tests read the Markdown and check every relative
link, image and #anchor against the files and headings that exist.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "benchmarks/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href|srcset)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(markdown: str) -> str:
    """``markdown`` without fenced code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    """Every link and image target of ``markdown``: Markdown ``[..](..)`` and ``![..](..)``, HTML src and href."""
    text = prose(markdown)
    return [m.group(1) for m in MD_LINK.finditer(text)] + [m.group(1) for m in HTML_LINK.finditer(text)]


def anchors(markdown: str) -> set[str]:
    """The #anchors GitHub gives ``markdown``'s headings: lower case, punctuation dropped, spaces to hyphens,
    and -1, -2, ... after a repeated one."""
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(FENCE.sub("", markdown)):
        title = re.sub(r"<[^>]+>", "", match.group(1)).lower()
        slug = "".join(c for c in title if c in " -_" or unicodedata.category(c)[0] in "LN").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def relative(target: str) -> bool:
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc and not target.startswith("//")


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_and_images_point_to_files_that_exist(page: str) -> None:
    source = ROOT / page
    text = source.read_text(encoding="utf-8")
    found = [t for t in links(text) if relative(t)]
    assert found, f"{page} has no relative links at all: is the link parser broken?"
    broken = []
    for target in found:
        parts = urlsplit(target)
        path = (source.parent / unquote(parts.path)).resolve() if parts.path else source
        if not path.exists():
            broken.append(f"{target} (no {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif parts.fragment and path.suffix == ".md":
            if unquote(parts.fragment).lower() not in anchors(path.read_text(encoding="utf-8")):
                broken.append(f"{target} (no heading #{parts.fragment} in {path.relative_to(ROOT)})")
        elif not path.resolve().is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
    assert not broken, f"{page}: dead links: " + "; ".join(broken)


def test_readme_shows_the_pictures_of_what_it_reads() -> None:
    targets = links((ROOT / "README.md").read_text(encoding="utf-8"))
    for picture in ("docs/example.png", "docs/example_boxes.png"):
        assert picture in targets
        assert (ROOT / picture).stat().st_size < 300_000, f"{picture} should stay small"


def test_readme_states_the_two_quick_start_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for command in ("bash scripts/quickstart.sh", "bash scripts/test.sh"):
        assert re.search(rf"^{re.escape(command)}\b", quick_start, re.M), f"README's Quick start lacks `{command}`"
        assert (ROOT / command.split()[1]).is_file()


def test_the_link_checks_catch_what_they_should() -> None:
    page = '[a](x.md#b) ![c](d.png "t") <img src="e.png"> `[f](g)` [h](https://i.org)\n```\n[j](k)\n```\n'
    assert links(page) == ["x.md#b", "d.png", "https://i.org", "e.png"]
    assert anchors("# The article's network\n## `best` over 4 seeds\n# Presets\n# Presets\n") == {
        "the-articles-network",
        "best-over-4-seeds",
        "presets",
        "presets-1",
    }


def test_every_test_the_hostile_case_table_names_exists():
    table = (ROOT / "tests" / "HOSTILE.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", table)
    assert len(named) >= 30
    for module, test in named:
        source = (ROOT / "tests" / module).read_text()
        assert re.search(rf"^def {test}\(", source, re.M), f"HOSTILE.md names {module}::{test}, which does not exist"
