"""A user's own items and interactions (CSV or Parquet) into the data contract, via a column mapping.

* Ids: a column whose values are all integers is used as is; otherwise its values are mapped to
  stable int64 ids kept in ``id_map_items.parquet`` / ``id_map_users.parquet`` (re-runs keep them).
* Timestamps: datetime columns, epoch numbers (``timestamp_unit``) or ISO-8601 text, all as UTC.
* ``satisfaction`` goes through the mapping's transform; values it cannot map are quarantined.
* Media: relative paths under the source directory are copied into the dataset at the same
  relative path; a missing or escaping path becomes null (counted in the notes), the item stays.
* Tree: the mapping's ``category_columns`` (broad -> fine, cut at the first empty value, padded
  with ``(general)`` to 4 levels); without them a placeholder tree (one ``all items`` chain).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from serendipity.datasets.common import (
    ID_MAP_ITEMS_FILE,
    ID_MAP_USERS_FILE,
    DatasetTables,
    IngestError,
    IngestSummary,
    Quarantine,
    assign_ids,
    check_output_dir,
    epoch_to_timestamp,
    first_time_per_item,
    id_map_table,
    load_id_map,
    parse_float,
    parse_int,
    read_csv_text,
    require_file,
    write_dataset,
)
from serendipity.datasets.mapping import GenericMapping, load_mapping, satisfaction_transform
from serendipity.datasets.media_files import copy_media, keep_source_media
from serendipity.datasets.paths import build_tree, normalize_path, placeholder_paths

PLACEHOLDER_LABEL = "all items"


def ingest_generic(source_dir: Path, out_dir: Path, mapping: GenericMapping | Path) -> IngestSummary:
    """Convert the files named by ``mapping`` (a model or a YAML path) under ``source_dir``."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    mapping = mapping if isinstance(mapping, GenericMapping) else load_mapping(mapping)
    check_output_dir(source_dir, out_dir)
    quarantine = Quarantine()
    summary = IngestSummary(
        source=mapping.name, out_dir=out_dir, placeholder_tree=not mapping.items.category_columns
    )
    items_path = source_dir / mapping.items.file
    events_path = source_dir / mapping.interactions.file
    items_raw, items = _read_mapped(items_path, _item_sources(mapping), quarantine)
    events_raw, events = _read_mapped(
        events_path, mapping.interactions.columns.model_dump(exclude_none=True), quarantine
    )
    items, item_map = _convert_items(items, mapping, out_dir, items_path.name, quarantine)
    events, user_map = _convert_events(
        events, items, item_map, mapping, out_dir, events_path.name, quarantine
    )

    first_seen = first_time_per_item(events["item_id"], events["ts"])
    created = (
        _timestamps(items["created_at"], mapping.timestamp_unit)
        if "created_at" in items
        else pd.Series(pd.NaT, index=items.index, dtype="datetime64[us, UTC]")
    )
    first_interaction = items["item_id"].map(first_seen).astype("datetime64[us, UTC]")
    items["created_at"] = created.fillna(first_interaction)
    # An item without a time has no interaction (its first one would give the time): nothing else is lost.
    items = quarantine.take(
        items, items["created_at"].isna(), items_path.name, "no created_at and no interaction: time unknown"
    )

    clusters, levels = build_tree(items["path"].tolist())
    items = pd.concat([items.reset_index(drop=True), levels], axis=1)
    media_files = keep_source_media(items, source_dir, summary.notes)
    items["text"] = (
        items["text"].astype(object).where(items["text"].notna(), None) if "text" in items else None
    )
    summary.record(items_path.name, len(items_raw), len(items), quarantine)
    summary.record(events_path.name, len(events_raw), len(events), quarantine)
    extra_tables = {
        file_name: id_map_table(id_map)
        for file_name, id_map in ((ID_MAP_ITEMS_FILE, item_map), (ID_MAP_USERS_FILE, user_map))
        if id_map is not None
    }
    tables = DatasetTables(clusters, items, events, extra_tables)
    return write_dataset(
        out_dir,
        tables,
        quarantine,
        summary,
        before_swap=lambda tmp: copy_media(media_files, source_dir, tmp),
    )


def _item_sources(mapping: GenericMapping) -> dict[str, str]:
    categories = {
        f"category_columns[{index}]": column for index, column in enumerate(mapping.items.category_columns)
    }
    return {**mapping.items.columns.model_dump(exclude_none=True), **categories}


def _read_mapped(
    path: Path, sources: dict[str, str], quarantine: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw file (CSV as text, or Parquet) and a frame of its mapped columns under contract names.

    A mapped column the file lacks is an error naming the file, the column and the mapping key.
    """
    require_file(path)
    if path.suffix.lower() in {".parquet", ".pq"}:
        raw = pq.read_table(path).to_pandas().reset_index(drop=True)
    else:
        raw = read_csv_text(path, ())
    for key, column in sources.items():
        if column not in raw.columns:
            found = ", ".join(map(str, raw.columns))
            raise IngestError(f"{path}: column {column!r} (mapped to {key}) not found; columns are {found}")
    quarantine.register(path.name, raw)
    return raw, pd.DataFrame({key: raw[column] for key, column in sources.items()}, index=raw.index)


def _convert_items(
    items: pd.DataFrame, mapping: GenericMapping, out_dir: Path, file_name: str, quarantine: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    id_column = mapping.items.columns.item_id
    items = quarantine.take(items, _blank(items["item_id"]), file_name, "empty item_id", id_column)
    item_ids, item_map = _ids(items["item_id"], out_dir, ID_MAP_ITEMS_FILE)
    items = items.assign(item_id=item_ids)
    items = quarantine.take(
        items, items["item_id"].duplicated(), file_name, "duplicate item_id (first kept)", id_column
    )
    items = quarantine.take(
        items, _blank(items["title"]), file_name, "empty title", mapping.items.columns.title
    )
    items = items.assign(title=items["title"].astype(str).str.strip())
    category_keys = [key for key in items.columns if key.startswith("category_columns[")]
    if category_keys:
        prefixes = items[category_keys].apply(_known_prefix, axis=1)
        first = mapping.items.category_columns[0]
        items = quarantine.take(items, prefixes.map(len) == 0, file_name, "empty first category", first)
        paths = [normalize_path(prefix) for prefix in prefixes.loc[items.index]]
    else:
        paths = placeholder_paths([PLACEHOLDER_LABEL] * len(items))
    return items.assign(path=pd.Series(paths, index=items.index, dtype=object)), item_map


def _convert_events(
    events: pd.DataFrame,
    items: pd.DataFrame,
    item_map: pd.DataFrame | None,
    mapping: GenericMapping,
    out_dir: Path,
    file_name: str,
    quarantine: Quarantine,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    columns = mapping.interactions.columns
    transform = mapping.interactions.satisfaction_transform
    events = events.assign(
        ts=_timestamps(events["ts"], mapping.timestamp_unit),
        satisfaction=satisfaction_transform(transform)(parse_float(events["satisfaction"].astype(str))),
    )
    events = quarantine.take(events, _blank(events["user_id"]), file_name, "empty user_id", columns.user_id)
    events = quarantine.take(events, events["ts"].isna(), file_name, "unparsable timestamp", columns.ts)
    events = quarantine.take(
        events,
        events["satisfaction"].isna(),
        file_name,
        f"satisfaction missing or invalid for transform {transform}",
        columns.satisfaction,
    )
    raw_item_ids = events["item_id"].astype(str).str.strip()
    item_ids = (
        parse_int(raw_item_ids)
        if item_map is None
        else raw_item_ids.map(dict(zip(item_map["source_id"], item_map["id"], strict=True))).astype("Int64")
    )
    unknown = ~item_ids.isin(set(items["item_id"]))
    events = quarantine.take(
        events.assign(item_id=item_ids),
        unknown,
        file_name,
        "item_id not among the converted items",
        columns.item_id,
    )
    repeated = events.assign(user=events["user_id"].astype(str).str.strip()).duplicated(
        ["user", "item_id", "ts"]
    )
    reason = "duplicate (user_id, item_id, ts) (first kept)"
    events = quarantine.take(events, repeated, file_name, reason, columns.ts)
    user_ids, user_map = _ids(events["user_id"], out_dir, ID_MAP_USERS_FILE)
    impressions = events["impression"].map(_as_bool) if "impression" in events else None
    converted = pd.DataFrame(
        {
            "user_id": user_ids,
            "item_id": events["item_id"].astype("int64"),
            "ts": events["ts"],
            "satisfaction": events["satisfaction"].astype(float),
            "impression": impressions,
            "source": mapping.name,
        },
        index=events.index,
    )
    return converted.reset_index(drop=True), user_map


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def _ids(values: pd.Series, out_dir: Path, map_file: str) -> tuple[pd.Series, pd.DataFrame | None]:
    """Integer ids as they are, or string ids mapped through the persisted id map."""
    as_int = parse_int(values.astype(str).str.strip())
    if as_int.notna().all():
        return as_int.astype("int64"), None
    mapped, mapping = assign_ids(values.astype(str).str.strip(), load_id_map(out_dir, map_file))
    return mapped, mapping


def _timestamps(values: pd.Series, unit: str) -> pd.Series:
    """Datetimes as UTC; per value, numbers are epochs in ``unit`` and text is ISO-8601 (else NaT)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        return stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    text = values.astype(str).str.strip()
    numeric = parse_float(text)
    from_epoch = epoch_to_timestamp(numeric, unit)
    from_text = pd.to_datetime(text.where(numeric.isna()), utc=True, errors="coerce", format="ISO8601")
    return from_epoch.fillna(from_text.astype("datetime64[us, UTC]"))


def _known_prefix(names: pd.Series) -> list[str]:
    prefix = []
    for name in names:
        cleaned = "" if pd.isna(name) else " ".join(str(name).split())
        if not cleaned:
            break
        prefix.append(cleaned)
    return prefix


_BOOLEAN_TEXT = {
    "1": True,
    "true": True,
    "yes": True,
    "y": True,
    "0": False,
    "false": False,
    "no": False,
    "n": False,
}


def _as_bool(value: object) -> bool | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return _BOOLEAN_TEXT.get(str(value).strip().lower())
