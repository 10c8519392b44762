"""The repository as a user meets it: the README's links resolve, the packaging is in one piece."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _links(markdown: Path) -> list[str]:
    text = markdown.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks hold commands, not links
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readmes_links_resolve_to_files_in_the_repository():
    links = [link for link in _links(ROOT / "README.md") if not re.match(r"[a-z]+:", link)]
    assert links, "the README links nothing?"
    for link in links:
        target = (ROOT / link.split("#")[0]).resolve()
        assert target.is_relative_to(ROOT), f"{link} points outside the repository"
        assert target.exists(), f"{link} does not exist"


def test_docs_links_resolve_too():
    for page in (ROOT / "docs").glob("*.md"):
        for link in _links(page):
            if re.match(r"[a-z]+:", link):
                continue
            target = (page.parent / link.split("#")[0]).resolve()
            assert target.is_relative_to(ROOT) and target.exists(), f"{page.name}: {link}"


def test_the_version_is_written_in_one_place():
    import pienteger_nb

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pienteger_nb.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", pienteger_nb.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {pienteger_nb.__version__}" in changelog and "## Unreleased" in changelog


def test_license_is_spdx_with_its_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_no_build_output_is_tracked():
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    if not tracked:  # not a git checkout (an sdist): nothing to check
        return
    assert not [path for path in tracked.splitlines() if ".egg-info/" in path or path.startswith("build/")]
    assert not (ROOT / "notebooks").exists() or not list((ROOT / "notebooks").glob("*.ipynb"))
