"""The README's commands are what CI runs: a change to one is a change to the other."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    """The commands of the README's first ```bash block (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert block is not None, "the README has no ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = readme_commands()
    assert len(commands) == 2 and all(" pytest " in c and "python -m pytest" not in c for c in commands)
    missing = [c for c in commands if c not in ci]
    assert not missing, f"README commands that .ci/run does not run as written: {missing}"


def test_the_readme_installs_pinned_versions() -> None:
    for command in readme_commands():
        assert "torch==2.13.0" in command and "-c constraints.txt" in command
    # package names as pip normalises them (tensorflow_cpu == tensorflow-cpu)
    pinned = re.sub(r"[-_.]+", "-", (ROOT / "constraints.txt").read_text().lower())
    for package in (
        "torch",
        "onnxruntime-openvino",
        "onnx",
        "onnxscript",
        "tensorflow-cpu",
        "tf2onnx",
        "hypothesis",
        "pytest",
        "pytest-benchmark",
    ):
        assert re.search(rf"^{re.escape(package)}==\S+$", pinned, re.MULTILINE), f"{package} is not pinned"
