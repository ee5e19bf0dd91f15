"""The dataset validator on a corpus of bad inputs: each case corrupts a copy of a valid dataset one way."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_inputs import write_bomb_png, write_clip

from serendipity.config import InputLimitsConfig
from serendipity.schema import (
    CLUSTERS_FILE,
    DATASET_FILES,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    LEVEL_COLUMNS,
    NUM_LEVELS,
    QUARANTINE_REASON,
    QUARANTINE_ROW,
    SCHEMAS,
)
from serendipity.tree import ClusterTree
from serendipity.validation import validate_dataset, write_validation
from serendipity.validation.media_paths import (
    ABSOLUTE_PATH,
    DECOMPRESSION_BOMB,
    EMPTY_PATH,
    FILE_TOO_LARGE,
    FRAME_TOO_LARGE,
    MEDIA_PATH,
    MISSING_FILE,
    OUTSIDE_DATASET,
    TOO_MANY_FRAMES,
    UNREADABLE_IMAGE,
    UNREADABLE_VIDEO,
    VIDEO_TOO_LONG,
)
from serendipity.validation.rules import QUARANTINED_PARENT, UNKNOWN_ITEM, row_checks, typing_checks

# Reasons a row of another file may get because of the corrupted row (knock-on effects).
KNOCK_ON_REASONS = ("is not a usable level-", UNKNOWN_ITEM, QUARANTINED_PARENT)
# Endings of the typing checks' reasons, one kind per rule that generates them for every column.
TYPING_CHECK_KINDS = ("is null", "is not an integer", "is not a parsable timestamp")
# Fatal problems: a file missing or unreadable, a required column missing or of the wrong type.
FATAL_KINDS = ("file not found", "unreadable Parquet", "is missing", "has type")


@pytest.fixture(scope="session")
def valid_dataset(world_dataset: Path) -> Path:
    """The synthetic world: every corruption below starts from a copy of it."""
    return world_dataset


@pytest.fixture
def dataset(valid_dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(valid_dataset, tmp_path / "dataset", symlinks=True))


# --- corruption helpers ---------------------------------------------------------------------------


def read(ds: Path, file: str) -> pd.DataFrame:
    return pq.read_table(ds / file).to_pandas()


def write(ds: Path, file: str, frame: pd.DataFrame) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), ds / file)


def leaf_rows(clusters: pd.DataFrame) -> list[int]:
    """Rows of level-4 clusters (no children, so corrupting one cascades only to items)."""
    return clusters.index[clusters["level"] == 4].tolist()


def set_leaf_value(ds: Path, leaf: int, column: str, value: object) -> int:
    """Set ``column`` of the ``leaf``-th level-4 cluster; returns its row."""
    clusters = read(ds, CLUSTERS_FILE)
    row = leaf_rows(clusters)[leaf]
    clusters.loc[row, column] = value
    write(ds, CLUSTERS_FILE, clusters)
    return row


def item_row_with_media(items: pd.DataFrame, column: str) -> int:
    return int(items.index[items[column].notna()][0])


@dataclass(frozen=True)
class Expect:
    file: str
    column: str
    reason: str
    rows: tuple[int, ...] = ()
    severity: str = "quarantined"  # fatal | quarantined | media
    extra_rows: tuple[int, ...] = ()  # rows of ``file`` also quarantined as a knock-on effect
    knock_on: tuple[str, ...] = ()  # further reasons allowed in the other files
    row_reason: str = ""  # the whole ``_reason`` of the quarantined rows, when several apply
    limits: InputLimitsConfig | None = None  # the validator's limits (None: the defaults)


Corruption = Callable[[Path], Expect]
CASES: dict[str, Corruption] = {}


def case(function: Corruption) -> Corruption:
    CASES[function.__name__] = function
    return function


@case
def missing_file(ds: Path) -> Expect:
    (ds / INTERACTIONS_FILE).unlink()
    return Expect(INTERACTIONS_FILE, "*", "file not found", severity="fatal")


@case
def unreadable_file(ds: Path) -> Expect:
    (ds / ITEMS_FILE).write_bytes(b"this is not parquet")
    return Expect(ITEMS_FILE, "*", "unreadable Parquet", severity="fatal")


@case
def missing_required_column(ds: Path) -> Expect:
    write(ds, INTERACTIONS_FILE, read(ds, INTERACTIONS_FILE).drop(columns=["satisfaction"]))
    return Expect(
        INTERACTIONS_FILE,
        "satisfaction",
        "required column 'satisfaction' (double) is missing",
        severity="fatal",
    )


@case
def mistyped_column(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    items["item_id"] = "id-" + items["item_id"].astype(str)
    write(ds, ITEMS_FILE, items)
    return Expect(ITEMS_FILE, "item_id", "column 'item_id' has type string, expected int64", severity="fatal")


@case
def duplicate_cluster_id(ds: Path) -> Expect:
    clusters = read(ds, CLUSTERS_FILE)
    first, second = leaf_rows(clusters)[:2]
    clusters.loc[second, "cluster_id"] = clusters.loc[first, "cluster_id"]
    write(ds, CLUSTERS_FILE, clusters)
    return Expect(CLUSTERS_FILE, "cluster_id", "duplicate cluster_id", (second,))


@case
def level_out_of_range(ds: Path) -> Expect:
    row = set_leaf_value(ds, 0, "level", 7)
    return Expect(CLUSTERS_FILE, "level", "level outside 1..4", (row,))


@case
def parent_at_wrong_level(ds: Path) -> Expect:
    clusters = read(ds, CLUSTERS_FILE)
    row = leaf_rows(clusters)[0]
    clusters.loc[row, "parent_id"] = clusters.loc[clusters["level"] == 2, "cluster_id"].iloc[0]
    write(ds, CLUSTERS_FILE, clusters)
    return Expect(CLUSTERS_FILE, "parent_id", "parent is not exactly one level above", (row,))


@case
def orphan_cluster(ds: Path) -> Expect:
    row = set_leaf_value(ds, -1, "parent_id", 987_654_321)
    return Expect(CLUSTERS_FILE, "parent_id", "orphan: parent_id names no cluster", (row,))


@case
def cluster_without_parent(ds: Path) -> Expect:
    row = set_leaf_value(ds, 3, "parent_id", None)
    return Expect(CLUSTERS_FILE, "parent_id", "orphan: level 2-4 cluster without parent_id", (row,))


@case
def quarantine_cascades_to_children(ds: Path) -> Expect:
    clusters = read(ds, CLUSTERS_FILE)
    parent_row = int(clusters.index[clusters["level"] == 3][0])
    children = clusters.index[clusters["parent_id"] == clusters.loc[parent_row, "cluster_id"]].tolist()
    clusters.loc[parent_row, "description"] = ""
    write(ds, CLUSTERS_FILE, clusters)
    return Expect(
        CLUSTERS_FILE,
        "parent_id",
        "parent cluster is quarantined",
        tuple(children),
        extra_rows=(parent_row,),
        row_reason="parent cluster is quarantined",
    )


@case
def parent_cycle(ds: Path) -> Expect:
    clusters = read(ds, CLUSTERS_FILE)
    first, second = leaf_rows(clusters)[:2]
    clusters.loc[first, "parent_id"] = clusters.loc[second, "cluster_id"]
    clusters.loc[second, "parent_id"] = clusters.loc[first, "cluster_id"]
    write(ds, CLUSTERS_FILE, clusters)
    return Expect(CLUSTERS_FILE, "parent_id", "cycle in parent links", (first, second))


@case
def level_one_with_parent(ds: Path) -> Expect:
    clusters = read(ds, CLUSTERS_FILE)
    root = clusters.loc[clusters["level"] == 1].iloc[0]
    extra = {
        "cluster_id": 987_654_321,
        "level": 1,
        "parent_id": root["cluster_id"],
        "description": "a stray root",
    }
    write(ds, CLUSTERS_FILE, pd.concat([clusters, pd.DataFrame([extra])], ignore_index=True))
    return Expect(CLUSTERS_FILE, "parent_id", "level-1 cluster has a parent", (len(clusters),))


@case
def duplicate_description(ds: Path) -> Expect:
    clusters = read(ds, CLUSTERS_FILE)
    first, second = leaf_rows(clusters)[:2]
    clusters.loc[second, "description"] = clusters.loc[first, "description"]
    write(ds, CLUSTERS_FILE, clusters)
    return Expect(CLUSTERS_FILE, "description", "duplicate description", (second,))


@case
def empty_description(ds: Path) -> Expect:
    row = set_leaf_value(ds, 1, "description", "   ")
    return Expect(CLUSTERS_FILE, "description", "description is empty", (row,))


@case
def null_description(ds: Path) -> Expect:
    row = set_leaf_value(ds, 2, "description", None)
    return Expect(CLUSTERS_FILE, "description", "description is null", (row,))


@case
def duplicate_item_id(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    items.loc[3, "item_id"] = items.loc[2, "item_id"]
    write(ds, ITEMS_FILE, items)
    return Expect(ITEMS_FILE, "item_id", "duplicate item_id", (3,))


def item_contradicts_tree(level: int) -> Corruption:
    """Item 0 moves to a sibling at ``level - 1``, so its cluster at ``level`` is no longer a child."""
    column, parent_column = LEVEL_COLUMNS[level - 1], LEVEL_COLUMNS[level - 2]

    def corrupt(ds: Path) -> Expect:
        items, tree = read(ds, ITEMS_FILE), ClusterTree.from_frame(read(ds, CLUSTERS_FILE))
        items.loc[0, parent_column] = tree.siblings(int(items.loc[0, parent_column]))[0]
        write(ds, ITEMS_FILE, items)
        return Expect(ITEMS_FILE, column, f"{column} is not a child of {parent_column}", (0,))

    corrupt.__name__ = f"item_contradicts_tree_{column}"
    return case(corrupt)


def item_unknown_cluster(level: int) -> Corruption:
    column = LEVEL_COLUMNS[level - 1]

    def corrupt(ds: Path) -> Expect:
        items = read(ds, ITEMS_FILE)
        items.loc[1, column] = 987_654_321
        write(ds, ITEMS_FILE, items)
        return Expect(ITEMS_FILE, column, f"{column} is not a usable level-{level} cluster", (1,))

    corrupt.__name__ = f"item_unknown_cluster_{column}"
    return case(corrupt)


for _level in range(1, NUM_LEVELS + 1):
    item_unknown_cluster(_level)
    if _level > 1:
        item_contradicts_tree(_level)


@case
def unparsable_created_at(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    items["created_at"] = items["created_at"].map(lambda ts: ts.isoformat())
    items.loc[4, "created_at"] = "the day before yesterday"
    write(ds, ITEMS_FILE, items)
    return Expect(ITEMS_FILE, "created_at", "created_at is not a parsable timestamp", (4,))


@case
def null_epoch_created_at(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    seconds = (items["created_at"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    items["created_at"] = seconds.astype("Int64")
    items.loc[5, "created_at"] = pd.NA
    write(ds, ITEMS_FILE, items)
    return Expect(ITEMS_FILE, "created_at", "created_at is null", (5,))


@case
def null_title(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    items.loc[6, "title"] = None
    write(ds, ITEMS_FILE, items)
    return Expect(ITEMS_FILE, "title", "title is null", (6,))


@case
def satisfaction_out_of_range(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs.loc[[1, 2], "satisfaction"] = [1.5, -0.1]
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(INTERACTIONS_FILE, "satisfaction", "satisfaction outside [0, 1]", (1, 2))


@case
def satisfaction_nan(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs.loc[4, "satisfaction"] = np.nan
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(INTERACTIONS_FILE, "satisfaction", "satisfaction is null", (4,))


@case
def duplicate_interaction(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs = logs.drop_duplicates(["user_id", "item_id", "ts"], ignore_index=True)
    logs.loc[6, ["user_id", "item_id", "ts"]] = logs.loc[5, ["user_id", "item_id", "ts"]]
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(INTERACTIONS_FILE, "ts", "duplicate (user_id, item_id, ts)", (6,))


@case
def interaction_on_unknown_item(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs.loc[7, "item_id"] = 987_654_321
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(INTERACTIONS_FILE, "item_id", "item_id is not a usable item", (7,))


@case
def interaction_on_quarantined_item(ds: Path) -> Expect:
    items, logs = read(ds, ITEMS_FILE), read(ds, INTERACTIONS_FILE)
    item_id = logs["item_id"].iloc[0]
    items.loc[items["item_id"] == item_id, "title"] = None
    write(ds, ITEMS_FILE, items)
    rows = tuple(logs.index[logs["item_id"] == item_id])
    return Expect(
        INTERACTIONS_FILE, "item_id", "item_id is not a usable item", rows, knock_on=("title is null",)
    )


@case
def null_ts(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs.loc[8, "ts"] = pd.NaT
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(INTERACTIONS_FILE, "ts", "ts is null", (8,))


@case
def fractional_user_id(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs["user_id"] = logs["user_id"].astype("float64")
    logs.loc[9, "user_id"] = 1.5
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(INTERACTIONS_FILE, "user_id", "user_id is not an integer", (9,))


@case
def several_problems_in_one_row(ds: Path) -> Expect:
    logs = read(ds, INTERACTIONS_FILE)
    logs.loc[3, ["ts", "satisfaction"]] = [pd.NaT, 2.0]
    write(ds, INTERACTIONS_FILE, logs)
    return Expect(
        INTERACTIONS_FILE, "ts", "ts is null", (3,), row_reason="ts is null; satisfaction outside [0, 1]"
    )


def _set_media(ds: Path, column: str, value: Callable[[str], str]) -> tuple[int, str]:
    items = read(ds, ITEMS_FILE)
    row = item_row_with_media(items, column)
    original = items.loc[row, column]
    items.loc[row, column] = value(original)
    write(ds, ITEMS_FILE, items)
    return row, original


@case
def path_traversal(ds: Path) -> Expect:
    row, _ = _set_media(ds, "thumbnail_path", lambda _: "../../etc/passwd")
    return Expect(
        ITEMS_FILE, "thumbnail_path", "path resolves outside the dataset directory", (row,), "media"
    )


@case
def symlink_out_of_dataset(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    row = item_row_with_media(items, "thumbnail_path")
    outside = ds.parent / "outside.png"
    shutil.copy(ds / items.loc[row, "thumbnail_path"], outside)
    (ds / "escape.png").symlink_to(outside)
    items.loc[row, "thumbnail_path"] = "escape.png"
    write(ds, ITEMS_FILE, items)
    return Expect(
        ITEMS_FILE, "thumbnail_path", "path resolves outside the dataset directory", (row,), "media"
    )


@case
def empty_media_path(ds: Path) -> Expect:
    row, _ = _set_media(ds, "thumbnail_path", lambda _: "")
    return Expect(ITEMS_FILE, "thumbnail_path", "empty path", (row,), "media")


@case
def absolute_media_path(ds: Path) -> Expect:
    row, _ = _set_media(ds, "video_path", lambda original: str((ds / original).resolve()))
    return Expect(ITEMS_FILE, "video_path", "absolute path", (row,), "media")


@case
def missing_video(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    row = item_row_with_media(items, "video_path")
    (ds / items.loc[row, "video_path"]).unlink()
    return Expect(ITEMS_FILE, "video_path", "file is missing", (row,), "media")


@case
def corrupt_thumbnail(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    row = item_row_with_media(items, "thumbnail_path")
    (ds / items.loc[row, "thumbnail_path"]).write_bytes(b"\x89PNG not really")
    return Expect(ITEMS_FILE, "thumbnail_path", "image does not decode", (row,), "media")


@case
def corrupt_video(ds: Path) -> Expect:
    items = read(ds, ITEMS_FILE)
    row = item_row_with_media(items, "video_path")
    (ds / items.loc[row, "video_path"]).write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    return Expect(ITEMS_FILE, "video_path", "video does not open or has no frames", (row,), "media")


# Limits the world's media (32 x 32, 16 frames at 5 fps, a few kB) are well within.
TIGHT_LIMITS = InputLimitsConfig(
    max_media_bytes=60_000, max_video_seconds=5.0, max_video_frames=30, max_frame_pixels=48 * 48
)
QUARANTINE_LONG_TEXT = InputLimitsConfig(
    max_title_chars=100, max_text_chars=1000, over_long_text="quarantine"
)


def _hostile_media(column: str, reason: str, write: Callable[[Path], object], name: str) -> Corruption:
    def corrupt(ds: Path) -> Expect:
        write(ds / "media" / name)
        row, _ = _set_media(ds, column, lambda _: f"media/{name}")
        return Expect(ITEMS_FILE, column, reason, (row,), "media", limits=TIGHT_LIMITS)

    corrupt.__name__ = f"media_over_limit_{name.replace('.', '_')}"
    return case(corrupt)


_hostile_media("video_path", VIDEO_TOO_LONG, lambda p: write_clip(p, frames=64, fps=8, side=32), "long.mp4")
_hostile_media("video_path", FRAME_TOO_LARGE, lambda p: write_clip(p, frames=8, fps=8, side=64), "wide.mp4")
_hostile_media("video_path", TOO_MANY_FRAMES, lambda p: write_clip(p, frames=40, fps=40, side=32), "many.mp4")
_hostile_media(
    "video_path", FILE_TOO_LARGE, lambda p: write_clip(p, frames=24, fps=8, side=64, noise=True), "noise.mp4"
)
_hostile_media("thumbnail_path", DECOMPRESSION_BOMB, write_bomb_png, "bomb.png")


def _over_long(column: str, value: str, row: int) -> Corruption:
    def corrupt(ds: Path) -> Expect:
        items = read(ds, ITEMS_FILE)
        items.loc[row, column] = value
        write(ds, ITEMS_FILE, items)
        reason = f"{column} longer than limits.max_{column}_chars"
        return Expect(ITEMS_FILE, column, reason, (row,), limits=QUARANTINE_LONG_TEXT)

    corrupt.__name__ = f"over_long_{column}"
    return case(corrupt)


_over_long("title", "t" * 101, 2)
_over_long("text", "x" * 1001, 3)


# --- tests ----------------------------------------------------------------------------------------


def _row_count(path: Path) -> int:
    return pq.read_metadata(path).num_rows


def test_clean_dataset_has_no_problems(dataset: Path, tmp_path: Path) -> None:
    result = validate_dataset(dataset)
    assert result.report.problems == [], [p.message for p in result.report.problems]
    out = write_validation(result, tmp_path / "validated")
    for file in DATASET_FILES:
        written = pq.read_table(out / file)
        assert written.schema.equals(SCHEMAS[file]), file
        assert written.num_rows == _row_count(dataset / file)
        assert _row_count(out / "quarantine" / file) == 0
    ClusterTree.load(out)
    assert _row_count(out / "quarantine" / "media.parquet") == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_reported_and_valid_rows_survive(name: str, dataset: Path, tmp_path: Path) -> None:
    expect = CASES[name](dataset)
    result = validate_dataset(dataset, expect.limits)
    report = result.report
    matching = [p for p in report.problems if p.file == expect.file and expect.reason in p.reason]
    assert matching, [p.message for p in report.problems]
    problem = matching[0]
    assert problem.column == expect.column
    assert expect.file in problem.message and repr(expect.column) in problem.message or expect.column == "*"
    out = write_validation(result, tmp_path / "validated")
    saved = json.loads((out / "validation_report.json").read_text())
    assert problem.message in [p["message"] for p in saved["problems"]]

    if expect.severity == "fatal":
        assert report.fatal and problem.severity == "fatal"
        assert sorted(p.name for p in out.iterdir()) == ["validation_report.json"]
        return
    assert not report.fatal, [p.message for p in report.problems if p.severity == "fatal"]
    assert problem.example_rows == list(expect.rows[:5])
    for row in expect.rows[:5]:
        assert f"{row}" in problem.message
    _assert_nothing_lost(dataset, out)
    if expect.severity == "media":
        _assert_media_fallback(out, expect)
    else:
        _assert_only_expected_rows_quarantined(out, expect)
    ClusterTree.load(out)


def _assert_nothing_lost(dataset: Path, out: Path) -> None:
    for file in DATASET_FILES:
        usable, quarantined = pq.read_table(out / file), pq.read_table(out / "quarantine" / file)
        assert usable.num_rows + quarantined.num_rows == _row_count(dataset / file), file
        assert usable.schema.equals(SCHEMAS[file]), file
        assert set(pq.read_schema(dataset / file).names) <= set(quarantined.schema.names)


def _assert_only_expected_rows_quarantined(out: Path, expect: Expect) -> None:
    for file in DATASET_FILES:
        quarantined = pq.read_table(out / "quarantine" / file).to_pandas()
        if file == expect.file:
            assert sorted(quarantined[QUARANTINE_ROW]) == sorted(expect.rows + expect.extra_rows)
            reasons = quarantined.set_index(QUARANTINE_ROW)[QUARANTINE_REASON]
            assert all(expect.reason in reasons[row] for row in expect.rows)
            if expect.row_reason:
                assert all(reasons[row] == expect.row_reason for row in expect.rows)
        else:
            for reason in quarantined[QUARANTINE_REASON]:
                allowed = KNOCK_ON_REASONS + expect.knock_on
                assert any(knock_on in reason for knock_on in allowed), (file, reason)


def _assert_media_fallback(out: Path, expect: Expect) -> None:
    """The item stays usable with its media path set to null; the media record says why."""
    assert _row_count(out / "quarantine" / ITEMS_FILE) == 0
    usable = pq.read_table(out / ITEMS_FILE).to_pandas()
    media = pq.read_table(out / "quarantine" / "media.parquet").to_pandas()
    assert list(media[QUARANTINE_ROW]) == list(expect.rows)
    record = media.iloc[0]
    assert record["_column"] == expect.column and record[QUARANTINE_REASON] == expect.reason
    item = usable.loc[usable["item_id"] == record["item_id"]]
    assert len(item) == 1 and item[expect.column].isna().all()
    assert record[MEDIA_PATH] is not None


def test_every_rule_is_exercised_by_a_case(valid_dataset: Path, tmp_path: Path) -> None:
    """Each table rule, each kind of typing check, each media problem and each fatal problem is the
    expectation of at least one case (which the test above then checks against the report)."""
    assert len(CASES) >= 20
    expected: set[tuple[str, str, str]] = set()
    for name, corrupt in CASES.items():
        copy = Path(shutil.copytree(valid_dataset, tmp_path / name, symlinks=True))
        expect = corrupt(copy)
        expected.add((expect.file, expect.column, expect.reason))
        shutil.rmtree(copy)
    reasons = {reason for _, _, reason in expected}

    table_rules = {
        (file, check.column, check.reason)
        for file in DATASET_FILES
        for check in row_checks(file)
        if check not in typing_checks(file)
    }
    assert table_rules - expected == set()
    for kind in TYPING_CHECK_KINDS:
        assert any(reason.endswith(kind) for reason in reasons), kind
    media = {EMPTY_PATH, ABSOLUTE_PATH, OUTSIDE_DATASET, MISSING_FILE, UNREADABLE_IMAGE, UNREADABLE_VIDEO}
    media |= {VIDEO_TOO_LONG, FRAME_TOO_LARGE, TOO_MANY_FRAMES, FILE_TOO_LARGE, DECOMPRESSION_BOMB}
    assert media - reasons == set()
    for kind in FATAL_KINDS:
        assert any(kind in reason for reason in reasons), kind


def test_empty_title_is_kept_with_a_warning(dataset: Path) -> None:
    items = read(dataset, ITEMS_FILE)
    items.loc[2, "title"] = ""
    write(dataset, ITEMS_FILE, items)
    result = validate_dataset(dataset)
    warning = next(p for p in result.report.problems if p.column == "title")
    assert warning.severity == "warning" and warning.example_rows == [2]
    assert result.usable[ITEMS_FILE].num_rows == len(items)


def test_rerun_is_idempotent(dataset: Path, tmp_path: Path) -> None:
    satisfaction_out_of_range(dataset)
    first = write_validation(validate_dataset(dataset), tmp_path / "out")
    snapshot = {f: pq.read_table(first / f) for f in DATASET_FILES}
    second = write_validation(validate_dataset(dataset), tmp_path / "out")
    assert all(pq.read_table(second / f).equals(snapshot[f]) for f in DATASET_FILES)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_exit_codes(dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serendipity.app.cli import app

    runner = CliRunner()
    clean = runner.invoke(app, ["validate", str(dataset), "--out", str(tmp_path / "clean")])
    assert clean.exit_code == 0, clean.output
    satisfaction_out_of_range(dataset)
    warned = runner.invoke(app, ["validate", str(dataset), "--out", str(tmp_path / "warned")])
    assert warned.exit_code == 0 and "quarantined" in warned.output, warned.output
    assert "satisfaction" in warned.output
    missing_required_column(dataset)
    failed = runner.invoke(app, ["validate", str(dataset), "--report", str(tmp_path / "report.json")])
    assert failed.exit_code == 1, failed.output
    assert json.loads((tmp_path / "report.json").read_text())["fatal"] is True
