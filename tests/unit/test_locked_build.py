"""The locked build: constraints.txt pins every installed distribution, and every install path reads it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = "serendipity"


def locked_pins() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of constraints.txt (names canonical)."""
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", requirement)
        assert match, f"constraints.txt: not an exact pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = match[2]
    return pins


def installed() -> dict[str, str]:
    """``name -> version`` of every distribution this interpreter sees, the project itself left out."""
    found = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    found.pop(PROJECT, None)
    return found


def test_every_installed_distribution_is_pinned_to_its_installed_version() -> None:
    pins = locked_pins()
    unpinned = sorted(set(installed()) - set(pins))
    assert not unpinned, f"installed but not in constraints.txt (run `make lock`): {unpinned}"
    # ==2.13.0 also admits a local build such as torch 2.13.0+cpu, as pip does
    moved = {
        name: (version, pins[name])
        for name, version in installed().items()
        if Version(version) not in SpecifierSet(f"=={pins[name]}")
    }
    assert not moved, f"installed version differs from the lock (installed, locked): {moved}"


def test_the_hand_picked_pins_are_in_the_lock_and_it_says_how_to_regenerate_it() -> None:
    pins = locked_pins()
    for line in (REPO / "constraints.in").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            assert pins[canonicalize_name(name)] == version, requirement
    lines = (REPO / "constraints.txt").read_text().splitlines()
    header = "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    assert "make lock" in header and "uv pip compile pyproject.toml constraints.in" in header
    assert "lock:" in (REPO / "Makefile").read_text()


def test_make_and_the_image_install_under_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -c constraints.txt -e '.[dev]'" in makefile
    assert "pip install -q -c constraints.txt --upgrade pip" in makefile
    dockerfile = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    assert "-c constraints.txt -e /app" in dockerfile and "-c constraints.txt --upgrade pip" in dockerfile
    assert "make test" in (REPO / ".ci" / "run").read_text()
