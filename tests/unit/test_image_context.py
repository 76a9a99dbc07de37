"""infra/Dockerfile against infra/Dockerfile.dockerignore, without Docker: every path the image COPYs
is in the build context, whole, and what it links to comes along. (tests/image/ builds the wheel
from that context and runs the Compose services' commands from it.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import image_context as ctx


@pytest.fixture(scope="module")
def context() -> list[str]:
    return ctx.context_files()


@pytest.fixture(scope="module")
def copies() -> list[ctx.Copy]:
    return ctx.copies(ctx.DOCKERFILE.read_text())


def test_the_matcher_follows_buildkits_rules() -> None:
    patterns = ctx.read_ignore("**\n!callstream/**\n!README.md\n**/__pycache__\n# a comment\n")
    assert ctx.ignored("tests/unit/test_x.py", patterns)
    assert ctx.ignored("alerts/rules.py", patterns)
    assert not ctx.ignored("callstream/cli.py", patterns)
    assert not ctx.ignored("callstream/deep/er/x.json", patterns)
    assert not ctx.ignored("README.md", patterns)
    assert ctx.ignored("README.mdx", patterns)
    assert ctx.ignored("callstream/__pycache__/cli.cpython-311.pyc", patterns)  # parent folder matches
    assert ctx.ignored("callstream/a/__pycache__/b.pyc", patterns)
    single = ctx.read_ignore("*.pyc\n")
    assert ctx.ignored("x.pyc", single) and not ctx.ignored("a/x.pyc", single)  # `*` stops at `/`


def test_dockerfile_copies_are_parsed(copies: list[ctx.Copy]) -> None:
    sources = [s for c in copies for s in c.sources]
    assert "pyproject.toml" in sources and "callstream" in sources and "alerts" in sources
    assert all(c.stage == 0 for c in copies), "only the build stage reads the context"


def test_every_copy_source_is_in_the_context(copies: list[ctx.Copy], context: list[str]) -> None:
    for copy in copies:
        for source in copy.sources:
            assert ctx.expand(source, context), f"COPY {source}: nothing in the build context"


def test_copied_folders_arrive_whole(copies: list[ctx.Copy], context: list[str]) -> None:
    """A folder the image copies has every file of the checkout's folder (caches aside): an ignore
    rule that drops part of a stage would otherwise pass the check above."""
    everything = ctx.checkout_files()
    kept = set(context)
    for source in [s for c in copies for s in c.sources]:
        under = [f for f in everything if f.startswith(source.rstrip("/") + "/")]
        missing = [f for f in under if f not in kept and "__pycache__" not in f and not f.endswith(".pyc")]
        assert not missing, f"COPY {source}: left out of the context: {missing[:5]}"


def test_package_links_resolve_inside_the_copied_tree(
    copies: list[ctx.Copy], tmp_path: Path, context: list[str]
) -> None:
    """callstream/producers -> ../producers etc.: the wheel build follows them, so each target must
    be copied too."""
    ctx.make_context(tmp_path / "context")
    ctx.lay_out(copies, tmp_path / "context", tmp_path / "src")
    links = [p for p in (tmp_path / "src").rglob("*") if p.is_symlink()]
    assert links, "the package links into the top-level folders are copied as links"
    for link in links:
        assert link.resolve().is_dir(), f"{link.relative_to(tmp_path)} points at nothing in the image"
        assert link.resolve().is_relative_to((tmp_path / "src").resolve())


def test_context_leaves_out_local_state(context: list[str]) -> None:
    assert not [f for f in context if f.startswith(("tests/", ".venv/", ".git/", "docs/"))]
    assert not [f for f in context if "__pycache__" in f]
