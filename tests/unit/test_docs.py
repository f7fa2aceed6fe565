"""README, docs/ and benchmarks/README.md hold only what is true of the repository: their links
resolve to files inside it, the paths they name exist, README stays short, docs/index.md lists
every page, and the tables that mirror the code (the routes, the metrics) match it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import Route

from busstats.api.app import create_app
from busstats.core.metrics import Metrics
from busstats.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md")), ROOT / "benchmarks" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+\s+(.+?)\s*$", re.MULTILINE)
FENCE = re.compile(r"```.*?```", re.DOTALL)
README_MAX_LINES = 200
REPO_PATH = re.compile(r"`((?:src|tests|harness|benchmarks|docs|\.ci|\.github)/[\w./-]*)`")
"""A path of the repository in backticks, as the pages name files: `tests/unit/test_docs.py`."""
ASSET_ROUTES = {"/docs/{name}", "/dashboard/{name}"}
"""Files of the /docs and dashboard pages, not routes a reader calls."""


def anchors(page: Path) -> set[str]:
    """The fragment each heading gets on GitHub: lower case, punctuation dropped, spaces
    turned into hyphens."""
    text = FENCE.sub("", page.read_text())
    return {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in HEADING.findall(text)
    }


def relative_links(page: Path) -> list[str]:
    """The page's links to files (web addresses left out)."""
    return [target for target in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", target)]


def section(page: Path, heading: str) -> str:
    """The text of the page under `heading`, up to the next heading of the same level."""
    text = page.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end >= 0 else len(text)]


def test_docs_has_the_contract_pages() -> None:
    names = {page.name for page in PAGES}
    for name in (
        "index.md",
        "api.md",
        "storage.md",
        "reference-server.md",
        "operations.md",
        "architecture.md",
        "settings.md",
    ):
        assert name in names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_stays_inside_the_repository_and_resolves(page: Path) -> None:
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if fragment and resolved.suffix == ".md":
            assert fragment in anchors(resolved), f"{page.name}: no heading for {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_path_a_page_names_exists(page: Path) -> None:
    for path in REPO_PATH.findall(page.read_text()):
        assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


def test_readme_is_short_and_links_only_down_into_the_repository() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README has {len(lines)} lines"
    for target in relative_links(README):
        assert not target.startswith(("/", "..")), f"README links to {target}"


def test_readme_quick_start_is_the_two_run_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", section(README, "## Quick start"), re.DOTALL)
    assert [block.strip() for block in blocks] == ["./run dev", "./run test"]
    run = (ROOT / "run").read_text()
    for command in ("dev", "test"):
        assert re.search(rf"^\s+{command}\)", run, re.MULTILINE), f"./run has no {command}"


def test_index_lists_every_page_of_docs_once() -> None:
    index = DOCS / "index.md"
    rows = [
        line for line in index.read_text().splitlines() if line.startswith("| [")
    ]  # one table row a page: | [name.md](name.md) | what it settles |
    listed = [LINK.findall(row)[0] for row in rows]
    pages = sorted(page.name for page in DOCS.glob("*.md") if page != index)
    assert sorted(listed) == pages
    assert len(set(listed)) == len(listed)


def test_the_route_table_names_every_route_of_the_app(tmp_path: Path) -> None:
    app = create_app(Settings(store=str(tmp_path / "store")))
    routes = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path not in ASSET_ROUTES
        for method in route.methods or ()
        if method != "HEAD"
    }
    table = section(DOCS / "usage.md", "## Routes at a glance")
    documented = {
        (method, path.split("?", 1)[0])
        for method, path in re.findall(r"`(GET|POST|PUT|DELETE) (/[^`\s]*)`", table)
    }
    assert documented == routes


def test_the_metrics_table_names_every_series() -> None:
    series = set()
    for family in Metrics().registry.collect():
        series.add(f"{family.name}_total" if family.type == "counter" else family.name)
    table = section(DOCS / "operations.md", "## Metrics and logs")
    documented = set(re.findall(r"`(busstats_[a-z_]+)`", table))
    assert documented == series
