"""The config package sits at the bottom of the library and has one import path for every name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import serendipity.config

# What ``import serendipity.config`` may bring in past ``import serendipity`` itself (whose __init__
# installs the torchvision shim from serendipity.mllm.torchvision_compat, before any config is read).
ALLOWED = re.compile(r"serendipity\.config(\..+)?|serendipity\.io")

PROBE = """
import json, sys
import serendipity
before = set(sys.modules)
import serendipity.config
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith("serendipity"))))
"""

REPO_ROOTS = (
    "serendipity",
    "serving",
    "spark_jobs",
    "ray_jobs",
    "features",
    "bench",
    "devtools",
    "infra",
    "tests",
)


def test_config_imports_nothing_from_higher_layers() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert "serendipity.config.pipeline" in imported  # the probe saw the package load
    assert [name for name in imported if not ALLOWED.fullmatch(name)] == []


def test_every_name_is_imported_from_the_package(repo_root: Path) -> None:
    package_dir = Path(serendipity.config.__file__).parent
    submodule = re.compile(r"\b(from|import)\s+serendipity\.config\.\w+")
    offenders = [
        f"{path.relative_to(repo_root)}:{number}"
        for root in REPO_ROOTS
        for path in sorted((repo_root / root).rglob("*.py"))
        if package_dir not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if submodule.search(line)
    ]
    assert offenders == []
    for name in serendipity.config.__all__:
        assert getattr(serendipity.config, name) is not None
