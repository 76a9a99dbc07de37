"""The image's install step without Docker: the callstream wheel built from exactly the build context
(infra/Dockerfile.dockerignore), laid out as the Dockerfile's COPYs lay it out, installed into a
fresh virtualenv as the image installs it, and every command a Compose service starts run with
`--help` from outside the checkout.

CI checks the context and the install step, not a built image (there is no Docker engine in CI):
the base image, apt packages and the runtime user are checked by reading the Dockerfile
(tests/unit/test_infra_compose.py, tests/unit/test_image_context.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import image_context as ctx

pytestmark = [pytest.mark.image, pytest.mark.slow]

COMPOSE_FILE = ctx.ROOT / "infra" / "docker-compose.yml"


def compose_commands() -> dict[str, list[str]]:
    """Each callstream-image service's command line (argv), its arguments dropped."""
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    commands: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        if "entrypoint" in service:
            entrypoint = service["entrypoint"]
            if entrypoint[:2] == ["sh", "-c"]:  # `exec callstream loadgen ...`
                words = shlex.split(entrypoint[2])
                start = words.index("exec") + 1
                commands[name] = words[start : start + 2]
            else:
                commands[name] = [w for w in entrypoint if not w.startswith("--")]
        else:
            commands[name] = ["callstream", service["command"][0]]
    return commands


def pip_steps(dockerfile: str, stage: int) -> list[str]:
    """The stage's RUN lines that call pip, `--mount` flags dropped (the wheels are a folder here)."""
    steps = []
    for word, rest, in_stage in ctx.instructions(dockerfile):
        if word == "RUN" and in_stage == stage and re.search(r"\bpip\b", rest):
            steps.append(re.sub(r"--mount=\S+\s*", "", rest))
    return steps


def as_local(step: str, python: str, wheels: Path) -> str:
    """A Dockerfile pip step for this machine: that interpreter's pip, the wheels folder."""
    step = re.sub(r"(?<![\w/-])pip(?=\s)", f"{shlex.quote(python)} -m pip", step)
    return step.replace("/wheels", str(wheels))


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(argv, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=1200)


def test_the_wheel_from_the_build_context_runs_every_compose_command(tmp_path: Path) -> None:
    """The Dockerfile's own pip steps, run here: the build stage's (locked, hash-checked wheels of
    every dependency, then callstream's wheel from exactly the build context) with this
    interpreter, the runtime stage's in a fresh virtualenv (nothing from an index)."""
    dockerfile = ctx.DOCKERFILE.read_text()
    ctx.make_context(tmp_path / "context")
    ctx.lay_out(ctx.copies(dockerfile), tmp_path / "context", tmp_path / "src")
    wheels = tmp_path / "wheels"

    build_steps = pip_steps(dockerfile, stage=0)
    assert any("--require-hashes" in step and "image.lock" in step for step in build_steps), build_steps
    for step in build_steps:
        done = run(["sh", "-c", as_local(step, sys.executable, wheels)], cwd=tmp_path / "src")
        assert done.returncode == 0, f"{step}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert len(list(wheels.glob("callstream-*.whl"))) == 1
    assert not list(wheels.glob("noida_db-*")), "the image has no `local` extra"

    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    runtime_steps = pip_steps(dockerfile, stage=1)
    assert runtime_steps and all("--no-index" in step for step in runtime_steps), runtime_steps
    for step in runtime_steps:
        done = run(["sh", "-c", as_local(step, python, wheels)], cwd=tmp_path)
        assert done.returncode == 0, f"{step}: {done.stdout[-3000:]}{done.stderr[-3000:]}"

    commands = compose_commands()
    assert set(commands) == {"setup", "stream", "sink", "alert", "ingest", "loadgen", "kibana-setup"}
    bin_dir = tmp_path / "venv" / "bin"
    work = tmp_path / "work"  # outside the checkout: nothing is imported from the sources
    work.mkdir()
    for service, argv in commands.items():
        program = str(bin_dir / argv[0])
        shown = run([program, *argv[1:], "--help"], cwd=work)
        output = shown.stdout + shown.stderr
        assert shown.returncode == 0, f"{service}: {argv} --help: {output}"
        assert "unavailable" not in output, f"{service}: {argv}: {output}"
        assert "Usage" in output or "usage" in output, f"{service}: {argv}: {output}"

    # Benchmarks need a source checkout, and an installed package says so instead of failing to import.
    bench = run([str(bin_dir / "callstream"), "bench", "producer"], cwd=work)
    assert bench.returncode == 2 and "run from a source checkout" in bench.stderr, bench.stderr

    # What the commands read at run time is in the wheel: rules, budgets, prices, Kibana objects.
    data = run(
        [
            python,
            "-c",
            "from callstream.infra.kibana import provision as p; from callstream.alerts import rules;"
            "from callstream import budgets; from callstream.streams import pricing;"
            "print(len(p.rule_files()), len(p.saved_objects_ndjson()), len(rules.load_rules().rules),"
            " len(budgets.load_budgets().budgets), len(pricing.load_price_file(pricing.DEFAULT_OVERRIDES)))",
        ],
        cwd=work,
    )
    assert data.returncode == 0, data.stderr
    assert all(int(n) > 0 for n in data.stdout.split()), data.stdout
