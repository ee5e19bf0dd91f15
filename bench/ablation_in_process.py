"""The offline ablation's arms without Ray or a video decoder, e.g. on a lone GPU machine.

`serendipity experiment ablate` fine-tunes each arm with Ray Train and decodes media with PyAV. This
script runs the same training (the library's examples, batches, optimizer settings and evaluation)
in one process from a pack of already decoded media, so many arms can run side by side on one GPU:

    # here: decode the curated set's media once (all frames + thumbnail of every context item)
    .venv/bin/python -m bench.ablation_in_process pack --config configs/demo.yaml --out .exp/abl40
    # there: one process per arm x seed (bench/ablation_in_process.sh starts all of them)
    python3 -m bench.ablation_in_process arm --pack .exp/abl40 --style video_cot --frames 4 --seed 0 \
        --steps 800 --eval-every 100 --out abl/video_cot-4f_s0.jsonl
    # here: the table of the complete arms (the library's ablation report)
    .venv/bin/python -m bench.ablation_in_process table --histories abl/*.jsonl --config configs/demo.yaml \
        --out bench/results/ablation_in_process

Differences from the command: no checkpoints, and batches are drawn by the same seeded rule as a
single Ray Train worker's.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd

from serendipity.config import load_config
from serendipity.layout import WorkLayout
from serendipity.mllm.prompts import ItemMedia, PromptStyle
from serendipity.schema import LEVEL_COLUMNS


def pack(args: argparse.Namespace) -> None:
    from serendipity.media_io import decode_video, load_image
    from serendipity.mllm.data import load_items, load_sft, load_tree
    from serendipity.mllm.tiny import dataset_texts

    config = load_config(args.config)
    layout = WorkLayout.of(config)
    sft = load_sft(layout)
    items = load_items(layout, sft["context_item_id"].unique().tolist())
    ids = [int(i) for i in items.index]
    size = config.mllm.image_size
    frames = np.stack([decode_video(config.dataset_dir / items.loc[i, "video_path"]) for i in ids])
    thumbs = np.stack([load_image(config.dataset_dir / items.loc[i, "thumbnail_path"], size) for i in ids])
    if frames.shape[2] != size:
        raise SystemExit(f"frames are {frames.shape[2]} px, the model takes {size}: pack resized frames")
    meta = {
        i: {
            "title": str(items.loc[i, "title"] or ""),
            "path": tuple(int(items.loc[i, c]) for c in LEVEL_COLUMNS),
        }
        for i in ids
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), ids=np.array(ids), frames=frames, thumbs=thumbs)
    tables = {
        "texts": dataset_texts(layout.catalog_dir()),
        "tree": load_tree(layout),
        "sft": sft,
        "meta": meta,
        "config": config.model_dump(mode="json"),
    }
    out.with_suffix(".pkl").write_bytes(pickle.dumps(tables))
    print(f"packed {len(ids)} items, {frames.shape[1]} frames each, {len(sft)} curated rows -> {out}")


def _media(packed: dict, tables: dict, style: PromptStyle, num_frames: int) -> dict[int, ItemMedia]:
    from serendipity.media_io import uniform_frame_indices

    frames, thumbs = packed["frames"], packed["thumbs"]
    media = {}
    for row, item_id in enumerate(int(i) for i in packed["ids"]):
        if style is PromptStyle.TEXT:
            images = []
        elif style is PromptStyle.THUMBNAIL_COT:
            images = [thumbs[row]]
        elif style is PromptStyle.FRAME_COT:  # the same draw as prompts.item_media_from_row
            images = [frames[row][int(np.random.default_rng(item_id).integers(frames.shape[1]))]]
        else:
            images = list(frames[row][uniform_frame_indices(frames.shape[1], num_frames)])
        meta = tables["meta"][item_id]
        media[item_id] = ItemMedia(item_id, meta["title"], meta["path"], images)
    return media


def arm(args: argparse.Namespace) -> None:
    import torch

    from serendipity.config import PipelineConfig
    from serendipity.mllm.ablation import Arm
    from serendipity.mllm.data import finetune_examples
    from serendipity.mllm.tiny import TinySize, build_tiny_model
    from serendipity.mllm.training import evaluate_validation, train_steps, training_optimizer

    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tables = pickle.loads(Path(args.pack).with_suffix(".pkl").read_bytes())
    packed = dict(np.load(Path(args.pack).with_suffix(".npz")))
    packed_config = PipelineConfig.model_validate(tables["config"])
    style = PromptStyle(args.style)
    mllm = packed_config.mllm.model_copy(
        update={"prompt_style": style.value, "num_frames": args.frames, "seed": args.seed}
    )
    config = packed_config.model_copy(update={"mllm": mllm})
    level = config.mining.level
    model, processor = build_tiny_model(
        tables["texts"], size=TinySize.for_image(mllm.image_size), seed=args.seed
    )
    media = _media(packed, tables, style, args.frames)
    data = finetune_examples(tables["tree"], tables["sft"], media, level, style, processor)
    if data.quarantined:
        raise SystemExit(f"{len(data.quarantined)} curated rows unusable, e.g. {data.quarantined[:2]}")
    torch.manual_seed(args.seed)
    model.to(device).train()
    name = Arm(style, args.frames).name
    history, start = [], time.time()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def record_evaluation(step: int, loss: float) -> None:
        metrics = evaluate_validation(model, processor, data, config)
        record = {"arm": name, "seed": args.seed, "step": step, "loss": loss}
        history.append({**record, **metrics, "seconds": round(time.time() - start, 1)})
        print(json.dumps(history[-1]), flush=True)
        out.write_text("".join(json.dumps(h) + "\n" for h in history))  # partial curves survive a kill

    train_steps(
        model,
        processor,
        training_optimizer(model, mllm.learning_rate),
        data.train,
        device=device,
        seed=args.seed,
        batch_size=mllm.batch_size,
        max_steps=args.steps,
        eval_every=args.eval_every,
        on_evaluation=record_evaluation,
    )


def table(args: argparse.Namespace) -> None:
    from serendipity.mllm.ablation import paper_experiments
    from serendipity.mllm.ablation_report import build_report
    from serendipity.mllm.satisfaction_guess import best_sibling_guess_recall

    rows = [json.loads(line) for path in args.histories for line in Path(path).read_text().splitlines()]
    histories = pd.DataFrame(rows).drop(columns=["seconds"]).sort_values(["arm", "seed", "step"])
    reached = histories.groupby(["arm", "seed"])["step"].max()
    complete = {a for a, steps in reached.groupby(level="arm") if steps.min() == reached.max()}
    experiments = [
        (e.name, e.title, [a.name for a in e.arms])
        for e in paper_experiments().values()
        if all(a.name in complete for a in e.arms)
    ]
    for arm_name, steps in reached.groupby(level="arm"):
        if arm_name not in complete:
            print(f"{arm_name}: incomplete (steps reached per seed {steps.tolist()})")
    every_arm = {a.name for e in paper_experiments().values() for a in e.arms}
    for arm_name in sorted(every_arm - set(reached.index.get_level_values("arm"))):
        print(f"{arm_name}: no evaluation reached")
    if not experiments:
        raise SystemExit("no experiment has all its arms complete")
    baseline = best_sibling_guess_recall(load_config(args.config))
    settings = {
        "seeds": sorted(histories["seed"].unique().tolist()),
        "max_steps": int(reached.max()),
        "eval_every": int(histories["step"].min()),
        "runner": "bench/ablation_in_process.py",
    }
    kept = histories[histories["arm"].isin({a for _, _, arms in experiments for a in arms})]
    report = build_report(Path(args.out), experiments=experiments, histories=kept, baseline=baseline,
                          settings=settings)  # fmt: skip
    print(report.paths["markdown"].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    a = commands.add_parser("arm")
    a.add_argument("--pack", required=True)
    a.add_argument("--style", required=True, choices=[s.value for s in PromptStyle])
    a.add_argument("--frames", type=int, default=4)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--steps", type=int, default=800)
    a.add_argument("--eval-every", type=int, default=100)
    a.add_argument("--device", default=None)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--out", required=True)
    t = commands.add_parser("table")
    t.add_argument("--histories", nargs="+", required=True)
    t.add_argument("--config", required=True)
    t.add_argument("--out", required=True)
    args = parser.parse_args()
    {"pack": pack, "arm": arm, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
