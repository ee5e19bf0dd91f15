"""The config package sits at the bottom of the library and has one import path for every name."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import serendipity.config
from serendipity.config import (
    PATH_FIELDS,
    ConfigError,
    PipelineConfig,
    config_from_dict,
    load_config,
    save_config,
    with_overrides,
)

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


# --- one rule for every path a config names -------------------------------------------------------------

RELATIVE = {
    "dataset_dir": "data/dataset",
    "work_dir": "../work",
    "mllm.model_dir": "models/base",
    "features.repo_dir": "feast_repo",
    "features.feature_store_yaml": "feast_repo/prod.yaml",
    "inference.audit_log": "logs/audit.tsv",
}


def _nested(flat: dict[str, object]) -> dict[str, object]:
    data: dict[str, object] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    return data


def _value(config: PipelineConfig, dotted: str) -> object:
    node: object = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_path_fields_lists_every_path_of_the_config() -> None:
    assert set(PATH_FIELDS) == set(RELATIVE)


def test_every_relative_path_resolves_against_the_config_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "c.yaml").write_text(yaml.safe_dump(_nested(RELATIVE)))
    config = load_config(folder / "c.yaml")
    for dotted, relative in RELATIVE.items():
        assert Path(str(_value(config, dotted))) == (folder / relative).resolve(), dotted


def test_a_relative_path_given_with_set_resolves_like_one_in_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "c.yaml").write_text(yaml.safe_dump({"dataset_dir": "/d", "work_dir": "/w"}))
    config = load_config(folder / "c.yaml", overrides={"mllm.model_dir": "models/qwen"})
    assert Path(config.mllm.model_dir) == folder / "models" / "qwen"


def test_unset_paths_keep_their_default_places(tmp_path: Path) -> None:
    from serendipity.feature_store import PROJECT_ROOT, feature_store_yaml, repo_dir

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"dataset_dir": "d", "work_dir": "w"}))
    config = load_config(tmp_path / "c.yaml")
    assert config.resolve(config.mllm.model_dir) == tmp_path / "w" / "models" / "mllm"
    assert repo_dir(config) == PROJECT_ROOT / "features"
    assert feature_store_yaml(config) == PROJECT_ROOT / "features" / "feature_store.yaml"
    assert config.inference.audit_log is None


@pytest.mark.parametrize("dotted", sorted(RELATIVE))
@pytest.mark.parametrize("uri", ["s3a://bucket/serendipity", "gs://bucket/x", "hdfs://nn:8020/x"])
def test_a_uri_for_a_path_is_refused_naming_the_key_and_the_shared_volume(
    tmp_path: Path, dotted: str, uri: str
) -> None:
    settings = {"dataset_dir": "/d", "work_dir": "/w", dotted: uri}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_nested(settings)))
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "c.yaml")
    message = str(raised.value)
    assert str(tmp_path / "c.yaml") in message
    assert f"{dotted}: {uri!r} is a URI" in message
    assert "shared volume" in message


def test_saved_config_reads_back_unchanged_from_any_folder(tmp_path: Path, repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "demo.yaml", overrides={"mllm.model_dir": "../models/x"})
    saved = save_config(config, tmp_path / "elsewhere" / "saved.yaml")
    assert load_config(saved) == config
    assert config.resolve(config.mllm.model_dir) == repo_root / "models" / "x"


def test_a_derived_config_keeps_default_paths_under_its_own_work_dir(tmp_path: Path, repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "test.yaml")
    moved = with_overrides(config, {"work_dir": str(tmp_path / "work")})
    assert moved.resolve(moved.mllm.model_dir) == tmp_path / "work" / "models" / "mllm"
    assert moved.features == config.features


def test_fine_tuning_the_tiny_random_model_warns_loudly(
    tmp_path: Path,
    world_dataset: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No model at mllm.model_dir (unset: under work_dir): the tiny model is built, and that is said once."""
    from serendipity.mllm.finetune import ensure_base_model
    from serendipity.mllm.model import MODEL_CONFIG_FILE

    real = tmp_path / "real"  # a model directory of its own, not built here
    real.mkdir()
    (real / MODEL_CONFIG_FILE).write_text("{}")
    base = {"dataset_dir": str(world_dataset), "work_dir": str(tmp_path / "work")}

    with caplog.at_level(logging.WARNING, logger="serendipity.mllm.finetune"):
        assert ensure_base_model(config_from_dict({**base, "mllm": {"model_dir": "real"}}, tmp_path)) == real
        assert caplog.records == [] and capsys.readouterr().err == ""
        built = ensure_base_model(config_from_dict({**base, "mllm": {"image_size": 16}}, tmp_path))
    assert built == tmp_path / "work" / "models" / "mllm"
    assert (built / MODEL_CONFIG_FILE).is_file()
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert f"TINY RANDOMLY INITIALISED test model at {built}" in caplog.records[0].getMessage()
    assert capsys.readouterr().err.count("WARNING: fine-tuning the TINY RANDOMLY INITIALISED") == 1
