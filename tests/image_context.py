"""The image's Docker build context, computed without Docker: what infra/Dockerfile.dockerignore lets
into the context, what infra/Dockerfile's COPY instructions take from it, and the build stage's
source tree laid out as those COPYs would lay it out.

The ignore file follows BuildKit's rules (moby/patternmatcher): patterns are read in order, a path
matches a pattern when it or one of its parent folders does, the last matching pattern decides, and
`!` re-includes. `*` and `?` stop at `/`; `**` crosses folders.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
DOCKERIGNORE = ROOT / "infra" / "Dockerfile.dockerignore"
# Never part of a checkout's sources (git-ignored): skipped when walking the repository.
LOCAL_ONLY = {".git", ".venv", ".callstream", "callstream.egg-info", "build", "dist", ".hypothesis"}


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    exclusion: bool  # a `!` line: re-includes what it matches


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(f"^{out}$")


def read_ignore(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        line = line.removeprefix("!").strip().lstrip("/")
        line = os.path.normpath(line).replace(os.sep, "/")
        patterns.append(IgnorePattern(_pattern_regex(line), exclusion))
    return patterns


def ignored(path: str, patterns: list[IgnorePattern]) -> bool:
    """Whether BuildKit leaves `path` (relative to the context, `/`-separated) out of the context."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    matched = False
    for pattern in patterns:
        if any(pattern.regex.match(candidate) for candidate in candidates):
            matched = not pattern.exclusion
    return matched


def checkout_files(root: Path = ROOT) -> list[str]:
    """Every file and symlink of the checkout (relative, `/`-separated), symlinks not followed."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        kept = []
        for name in dirs:
            if (here / name).is_symlink():
                files.append(name)
            elif not (here == root and name in LOCAL_ONLY):
                kept.append(name)
        dirs[:] = kept
        found += [(here / name).relative_to(root).as_posix() for name in files]
    return sorted(found)


def context_files(root: Path = ROOT) -> list[str]:
    patterns = read_ignore(DOCKERIGNORE.read_text())
    return [path for path in checkout_files(root) if not ignored(path, patterns)]


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    stage: int  # 0 for the first FROM


def instructions(text: str) -> list[tuple[str, str, int]]:
    """(instruction, arguments, stage) for each instruction, continuation lines joined."""
    out, stage, pending = [], -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage += 1
        out.append((word.upper(), rest.strip(), stage))
    return out


def copies(text: str) -> list[Copy]:
    """The COPY (and ADD) instructions that read the build context (not `--from=` another stage)."""
    found = []
    for word, rest, stage in instructions(text):
        if word not in ("COPY", "ADD"):
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from=") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        found.append(Copy(tuple(args[:-1]), args[-1], stage))
    return found


def expand(source: str, files: list[str]) -> list[str]:
    """The context entries a COPY source names: a glob over paths, and for a folder all under it."""
    source = source.rstrip("/").removeprefix("./")
    tops = sorted({f for f in files if fnmatch.fnmatchcase(f, source)})
    folders = sorted({f.rsplit("/", 1)[0] for f in files if "/" in f})
    tops += [d for d in folders if fnmatch.fnmatchcase(d, source) and "/" not in d.removeprefix(source)]
    return sorted(set(tops))


def lay_out(copy_list: list[Copy], context: Path, target: Path) -> None:
    """Apply the COPYs to `target` as BuildKit would in a stage whose WORKDIR is `target`: a folder
    source's contents go into the destination, symlinks copied as symlinks."""
    files = checkout_files(context)
    for copy in copy_list:
        matched = [m for s in copy.sources for m in expand(s, files)]
        as_folder = copy.dest.endswith("/") or len(copy.sources) > 1
        for match in matched:
            source = context / match
            dest = target / copy.dest
            if as_folder and not source.is_dir():
                dest = dest / source.name
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest, follow_symlinks=False)


def make_context(target: Path) -> None:
    """A copy of exactly the build context: what the ignore file lets in, symlinks kept."""
    for rel in context_files():
        source, dest = ROOT / rel, target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest, follow_symlinks=False)
