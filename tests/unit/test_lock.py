"""The locked supply chain: requirements/*.lock (scripts/lock.sh) pin, with hashes, a version of
every requirement of their extra that pyproject.toml allows, the image's lock leaves out `local`,
and the image's base is pinned by digest."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests import image_context as ctx

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What CI and the image run on: the markers are evaluated for it.
TARGET = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux"}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)(?: ;([^\\]+))?")


def lock_entries(name: str) -> dict[str, list[tuple[Version, str | None, int]]]:
    """Package -> [(version, marker, number of hashes)] of requirements/NAME.lock."""
    entries: dict[str, list[tuple[Version, str | None, int]]] = {}
    current: list[object] | None = None
    for line in (ROOT / "requirements" / f"{name}.lock").read_text().splitlines():
        pin = PIN.match(line)
        if pin:
            current = [Version(pin[2]), pin[3].strip() if pin[3] else None, 0]
            key = canonicalize_name(pin[1])
            entries.setdefault(key, []).append(current)  # type: ignore[arg-type]
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            current[2] += 1  # type: ignore[operator]
    return {k: [tuple(e) for e in v] for k, v in entries.items()}  # type: ignore[misc]


def requirements_of(extra: str) -> list[Requirement]:
    """Every third-party requirement of callstream[extra] (self-references followed), for TARGET."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    found, todo, seen = list(map(Requirement, PYPROJECT["project"]["dependencies"])), [extra], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in extras[name]:
            req = Requirement(text)
            if req.name == "callstream":
                todo += sorted(req.extras)
            else:
                found.append(req)
    return [r for r in found if r.marker is None or r.marker.evaluate(TARGET)]


@pytest.mark.parametrize("extra", ["dev", "image"])
def test_the_lock_pins_every_requirement_with_hashes(extra: str) -> None:
    entries = lock_entries(extra)
    assert entries, f"requirements/{extra}.lock is empty"
    for name, pins in entries.items():
        for version, _, hashes in pins:
            assert hashes > 0, f"{extra}.lock: {name}=={version} has no hash"
    for req in requirements_of(extra):
        pins = [
            v
            for v, marker, _ in entries.get(canonicalize_name(req.name), [])
            if marker is None or Requirement(f"x; {marker}").marker.evaluate(TARGET)  # type: ignore[union-attr]
        ]
        assert len(pins) == 1, f"{extra}.lock: {req.name} is not pinned once for Python 3.11 ({pins})"
        assert req.specifier.contains(pins[0], prereleases=True), (
            f"{extra}.lock pins {req.name}=={pins[0]}, but pyproject.toml asks {req}: run scripts/lock.sh"
        )


def test_the_image_lock_has_no_local_servers() -> None:
    assert "noida-db" in lock_entries("dev")
    image = lock_entries("image")
    assert "noida-db" not in image and "pytest" not in image and "quixstreams" not in image
    assert "image" in PYPROJECT["project"]["optional-dependencies"]
    assert "callstream[image,local]" in PYPROJECT["project"]["optional-dependencies"]["all"]


def test_every_base_image_is_pinned_by_digest() -> None:
    dockerfile = ctx.DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, flags=re.MULTILINE))
    froms = [rest.split()[0] for word, rest, _ in ctx.instructions(dockerfile) if word == "FROM"]
    assert len(froms) == 2
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", resolved), f"FROM {image} -> {resolved}"


def test_the_image_and_ci_install_from_the_locks() -> None:
    dockerfile = ctx.DOCKERFILE.read_text()
    assert "--require-hashes --wheel-dir /wheels -r requirements/image.lock" in dockerfile
    assert 'pip install --no-index --find-links=/wheels "callstream[image]"' in dockerfile
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "--require-hashes" in bootstrap and "requirements/${extras}.lock" in bootstrap
    assert "--no-deps -e ." in bootstrap
