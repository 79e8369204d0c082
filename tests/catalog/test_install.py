"""The locked install: requirements/lock.txt agrees with pyproject.toml, the Makefile installs from it
(torch first, from the CPU wheel index when TORCH_INDEX is given), and README.md's install commands
name the pinned torch and the PyTorch CPU index exactly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements" / "lock.txt"
TORCH_PIN = REPO_ROOT / "requirements" / "torch.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_ONLY = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, _, version = line.partition("==")
            assert version and " " not in version, f"{path.name}: not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _torch_version() -> str:
    pins = _pins(TORCH_PIN)
    assert list(pins) == ["torch"]
    return pins["torch"]


def test_lock_pins_every_requirement_of_the_dev_extra_within_its_bounds() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    pending = ["dev"]
    while pending:  # dev = modl[impls,plot,site] + tools: follow the self-references
        for text in extras[pending.pop()]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "modl":
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    pins = _pins(LOCK)
    torch = _torch_version()
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        version = torch if name == "torch" else pins.get(name)
        assert version is not None, f"{name} is required by pyproject.toml but not locked: run `make lock`"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} (locked) is outside pyproject.toml's {requirement}: run `make lock`")


def test_lock_leaves_out_torch_and_its_cuda_only_dependencies() -> None:
    assert [name for name in _pins(LOCK) if CUDA_ONLY.match(name)] == []
    assert {"sympy", "networkx", "filelock", "fsspec", "jinja2"} <= set(_pins(LOCK)), "torch's own dependencies"


def test_readme_names_the_pinned_torch_and_the_cpu_index() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    header = (REPO_ROOT / "modl" / "templates" / "readme_header.md").read_text(encoding="utf-8")
    torch = _torch_version()
    for text in (readme, header):
        assert f"`pip install torch=={torch} --index-url {CPU_INDEX}`" in text
        assert f"`make all TORCH_INDEX={CPU_INDEX}`" in text
        assert "`sudo apt-get install chromium`" in text and "`make test`" in text
        assert set(re.findall(r"torch(?:==| )(\d+\.\d+\.\d+)", text)) == {torch}, "every torch version named is the pin"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("index", ["", CPU_INDEX])
def test_setup_installs_torch_then_the_lock_then_the_checkout(index: str) -> None:
    # make -n -B: print the recipe of the stamp without running it.
    result = subprocess.run(["make", "-n", "-B", ".stamp-setup", f"TORCH_INDEX={index}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    pip = [line.split(maxsplit=1)[1].strip() for line in result.stdout.splitlines() if line.startswith(".venv/bin/pip ")]
    torch_args = " --index-url " + index if index else ""
    assert pip == [
        "install --quiet -r requirements/torch.txt" + torch_args,
        "install --quiet --no-deps -r requirements/lock.txt",
        "install --quiet --no-deps --no-build-isolation -e .",
        "check",
    ]
