# Every arm x seed of the paper's ablation side by side on one machine (see ablation_in_process.py).
# Usage, from the repository root: bash bench/ablation_in_process.sh PACK OUT_DIR [STEPS] [EVAL_EVERY] [LIMIT_S]
set -u
pack=$1 out=$2 steps=${3:-800} every=${4:-100} limit=${5:-600}
mkdir -p "$out"
run() {
  name=$1; shift
  timeout "$limit" python3 -m bench.ablation_in_process arm --pack "$pack" --steps "$steps" \
    --eval-every "$every" --out "$out/$name.jsonl" "$@" > "$out/$name.log" 2>&1 &
}
for seed in 0 1 2; do
  run "text_s$seed" --style text --seed "$seed"
  for style in video video_text; do run "${style}_s$seed" --style "$style" --frames 4 --seed "$seed"; done
  for frames in 1 2 4 8; do run "cot${frames}_s$seed" --style video_cot --frames "$frames" --seed "$seed"; done
  run "thumbnail_s$seed" --style thumbnail_cot --seed "$seed"
  run "frame_s$seed" --style frame_cot --seed "$seed"
done
wait
