"""MovieLens (ml-latest-small) into the data contract.

* ``ratings.csv`` -> interactions: ``satisfaction = (rating - 0.5) / 4.5`` (ratings are 0.5..5.0),
  ``ts`` from the epoch seconds, ``source = "movielens"``, ``impression`` unknown (null).
* ``movies.csv`` -> items: ``title``; ``text`` = the genres, then the movie's distinct tags from
  ``tags.csv``; no media (null paths); ``created_at`` = the movie's first rating or tag time.
* No hierarchy in MovieLens: a placeholder tree (the first listed genre at level 1, a single
  ``(general)`` chain below it), marked by ``tree_info.json`` until a real tree is built.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from serendipity.datasets.common import (
    DatasetTables,
    IngestSummary,
    Quarantine,
    check_output_dir,
    epoch_to_timestamp,
    first_time_per_item,
    parse_float,
    parse_int,
    read_source_csv,
    write_dataset,
)
from serendipity.datasets.paths import build_tree, placeholder_paths

SOURCE_NAME = "movielens"
MOVIES_FILE = "movies.csv"
RATINGS_FILE = "ratings.csv"
TAGS_FILE = "tags.csv"
RATING_MIN, RATING_MAX = 0.5, 5.0
NO_GENRES = "(no genres listed)"


def ingest_movielens(source_dir: Path, out_dir: Path) -> IngestSummary:
    """Convert an ml-latest-small directory into a dataset directory at ``out_dir``."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    check_output_dir(source_dir, out_dir)
    quarantine = Quarantine()
    summary = IngestSummary(source=SOURCE_NAME, out_dir=out_dir, placeholder_tree=True)

    movies_raw = read_source_csv(source_dir / MOVIES_FILE, ("movieId", "title", "genres"), quarantine)
    movies = _parse_movies(movies_raw, quarantine)
    ratings_raw = read_source_csv(
        source_dir / RATINGS_FILE, ("userId", "movieId", "rating", "timestamp"), quarantine
    )
    interactions = _parse_ratings(ratings_raw, set(movies["item_id"]), quarantine)
    tags_path = source_dir / TAGS_FILE
    tags_raw = (
        read_source_csv(tags_path, ("userId", "movieId", "tag", "timestamp"), quarantine)
        if tags_path.is_file()
        else pd.DataFrame({"userId": [], "movieId": [], "tag": [], "timestamp": []}, dtype=str)
    )
    tags = _parse_tags(tags_raw, movies, quarantine)

    first_seen = (
        pd.concat(
            [
                first_time_per_item(interactions["item_id"], interactions["ts"]),
                first_time_per_item(tags["item_id"], tags["ts"]),
            ]
        )
        .groupby(level=0)
        .min()
    )
    movies["created_at"] = movies["item_id"].map(first_seen).astype("datetime64[us, UTC]")
    movies = quarantine.take(
        movies, movies["created_at"].isna(), MOVIES_FILE, "movie has no rating or tag: creation time unknown"
    )
    movies["text"] = _item_texts(movies, tags)
    clusters, levels = build_tree(placeholder_paths(movies["first_genre"].tolist()))
    items = pd.concat([movies.reset_index(drop=True), levels], axis=1)
    items["thumbnail_path"] = None
    items["video_path"] = None

    summary.record(MOVIES_FILE, len(movies_raw), len(items), quarantine)
    summary.record(RATINGS_FILE, len(ratings_raw), len(interactions), quarantine)
    if tags_path.is_file():
        summary.record(TAGS_FILE, len(tags_raw), len(tags), quarantine)
    summary.notes.append("placeholder tree: first listed genre at level 1, '(general)' chain below")
    return write_dataset(out_dir, DatasetTables(clusters, items, interactions), quarantine, summary)


def _parse_movies(raw: pd.DataFrame, quarantine: Quarantine) -> pd.DataFrame:
    frame = raw.assign(item_id=parse_int(raw["movieId"]))
    frame = quarantine.take(
        frame, frame["item_id"].isna(), MOVIES_FILE, "movieId is not an integer", "movieId"
    )
    frame = quarantine.take(
        frame, frame["item_id"].duplicated(), MOVIES_FILE, "duplicate movieId (first kept)", "movieId"
    )
    frame = quarantine.take(frame, frame["title"].str.strip() == "", MOVIES_FILE, "empty title", "title")
    genres = frame["genres"].str.split("|").map(lambda names: [n.strip() for n in names if n.strip()])
    frame = frame.assign(
        item_id=frame["item_id"].astype("int64"),
        title=frame["title"].str.strip(),
        genre_list=genres.map(lambda names: [n for n in names if n != NO_GENRES]),
        first_genre=genres.map(lambda names: names[0] if names else NO_GENRES),
    )
    return frame


def _parse_ratings(raw: pd.DataFrame, movie_ids: set[int], quarantine: Quarantine) -> pd.DataFrame:
    frame = raw.assign(
        user_id=parse_int(raw["userId"]),
        item_id=parse_int(raw["movieId"]),
        rating=parse_float(raw["rating"]),
        ts=epoch_to_timestamp(raw["timestamp"]),
    )
    frame = quarantine.take(
        frame, frame["user_id"].isna(), RATINGS_FILE, "userId is not an integer", "userId"
    )
    frame = quarantine.take(
        frame, frame["item_id"].isna(), RATINGS_FILE, "movieId is not an integer", "movieId"
    )
    out_of_range = ~frame["rating"].between(RATING_MIN, RATING_MAX)
    frame = quarantine.take(frame, out_of_range, RATINGS_FILE, "rating missing or outside 0.5..5.0", "rating")
    frame = quarantine.take(
        frame, frame["ts"].isna(), RATINGS_FILE, "timestamp is not epoch seconds", "timestamp"
    )
    unknown = ~frame["item_id"].isin(movie_ids)
    frame = quarantine.take(frame, unknown, RATINGS_FILE, "movieId not among the converted movies", "movieId")
    repeated = frame.duplicated(["user_id", "item_id", "ts"])
    frame = quarantine.take(
        frame, repeated, RATINGS_FILE, "duplicate (userId, movieId, timestamp) (first kept)"
    )
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype("int64"),
            "item_id": frame["item_id"].astype("int64"),
            "ts": frame["ts"],
            "satisfaction": (frame["rating"] - RATING_MIN) / (RATING_MAX - RATING_MIN),
            "impression": pd.Series([None] * len(frame), dtype=object, index=frame.index),
            "source": SOURCE_NAME,
        }
    ).reset_index(drop=True)


def _parse_tags(raw: pd.DataFrame, movies: pd.DataFrame, quarantine: Quarantine) -> pd.DataFrame:
    frame = raw.assign(item_id=parse_int(raw["movieId"]), ts=epoch_to_timestamp(raw["timestamp"]))
    frame = quarantine.take(frame, frame["item_id"].isna(), TAGS_FILE, "movieId is not an integer", "movieId")
    unknown = ~frame["item_id"].isin(set(movies["item_id"]))
    frame = quarantine.take(frame, unknown, TAGS_FILE, "movieId not among the converted movies", "movieId")
    frame = quarantine.take(frame, frame["tag"].str.strip() == "", TAGS_FILE, "empty tag", "tag")
    frame = quarantine.take(
        frame, frame["ts"].isna(), TAGS_FILE, "timestamp is not epoch seconds", "timestamp"
    )
    return pd.DataFrame(
        {"item_id": frame["item_id"].astype("int64"), "tag": frame["tag"].str.strip(), "ts": frame["ts"]}
    )


def _item_texts(movies: pd.DataFrame, tags: pd.DataFrame) -> pd.Series:
    """``"Genres: A, B. Tags: x, y"``: distinct tags (case-insensitive) in order of first use."""
    ordered = tags.sort_values("ts", kind="stable")
    tag_lists = ordered.groupby("item_id")["tag"].agg(lambda values: list(dict.fromkeys(values)))
    texts = []
    for item_id, genres in zip(movies["item_id"], movies["genre_list"], strict=True):
        parts = [f"Genres: {', '.join(genres)}."] if genres else []
        item_tags = _dedupe_casefold(tag_lists.get(item_id, []))
        if item_tags:
            parts.append(f"Tags: {', '.join(item_tags)}.")
        texts.append(" ".join(parts) or None)
    return pd.Series(texts, index=movies.index, dtype=object)


def _dedupe_casefold(values: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for value in values:
        if value.casefold() not in seen:
            seen.add(value.casefold())
            kept.append(value)
    return kept
