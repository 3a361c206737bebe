"""environment.yml (conda users) lists the same dependencies as pyproject.toml, with constraints.txt's pins."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def split(requirement: str):
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.strip()


def test_environment_yml_matches_pyproject_and_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    expected = dict(split(r) for r in declared)
    pins = dict(
        split(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")
    )
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(item["pip"] for item in conda if isinstance(item, dict))
    listed = dict(split(r) for r in pip_section)
    assert set(listed) == set(expected)
    for name, spec in listed.items():
        assert spec in (expected[name], pins.get(name)), f"{name}: environment.yml says {spec!r}"
        if name in ("torch", "torchvision"):
            assert spec == pins[name]
