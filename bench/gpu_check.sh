#!/usr/bin/env bash
# The GPU checks in one go, within 9 minutes on one H100/H200 (each part has its own `timeout`, so a slow part cannot
# eat the others' time). Issue 23's GPU items: 3 (padding as data) in parts 1, 2 and 4, 4 (rotary positions in fp32
# under bf16) in part 4 with RECIPE_SET='rope=true', 5 (evaluation at ImageNet size) in parts 4 and 5, 6 (compile
# never recompiles) in part 3.
#   1. side     ViT-B/16, ViT-L/16, ViT-H/14 at batch 128: the official modules, ours on the same truncated masks,
#               ours on the same draws padded with -1 (bench/gpu_step.py)
#   2. giant    ViT-g/16 at batch 128 with gradient checkpointing, the same three runs
#   3. compile  ours with pad_to='max': eager, then torch.compile, with the recompile count (COMPILE_MODELS: ViT-B/16)
#   4. recipe   bench/gpu_recipe.sh: cifar10_small for RECIPE_MINUTES (default 1.25) on the data in GPU memory, with
#               the overrides in RECIPE_SET (default none), ending with its own evaluation
#   5. eval     bench/eval_cost.py: the probes' encoding in fp32 against bf16 and a killed, resumed feature store, on
#               part 4's checkpoint (else a toy encoder); skipped while that file does not exist
#   6. fsdp     issue 23 item 8: cifar10_tiny with fsdp=true under torchrun (FSDP_GPUS processes, default 1; NCCL on a
#               GPU, gloo on the CPU with --toy): 4 steps with the online k-NN monitor and a k-NN probe, then a resume
#               to step 6; needs the CIFAR10 data like part 4
#
#   bench/gpu_check.sh [--toy] [--official PATH] [--data CIFAR10] [OUT_DIR]
#   OFFICIAL=PATH CIFAR10=PATH bench/gpu_check.sh            # the same, from the environment
#
# PATH is the root of a facebookresearch/ijepa checkout (the folder holding src/; never copied into this repository);
# without it the official runs are skipped. CIFAR10 (or IJEPA_DATA) is the recipe's data; without it part 4 is skipped.
# Results: OUT_DIR (default bench/results/gpu_check_<date>): one JSONL and one log per part, machine.txt, status.tsv
# (part, exit code, seconds; 124 = timed out) and table.md. Part time limits in seconds (T_SIDE 130, T_GIANT 80,
# T_COMPILE 140, T_RECIPE 110, T_EVAL 60, T_FSDP 90: 610 s in all, plus a few seconds of set-up) can be changed from the environment.
# --toy: the same parts on the CPU with a one-block ViT-Ti (compile with the 'eager' backend), in one to three minutes:
# it checks the script and the code paths, it measures nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
toy=0; official=${OFFICIAL:-}; data=${CIFAR10:-${IJEPA_DATA:-}}; out=''
while [ $# -gt 0 ]; do
  case $1 in
    --toy) toy=1 ;;
    --official) official=${2:?--official needs a path}; shift ;;
    --data) data=${2:?--data needs a path}; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "bench/gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
out=${out:-bench/results/gpu_check_$(date +%Y-%m-%d_%H%M)$([ $toy = 1 ] && echo _toy)}
mkdir -p "$out"
py=${PYTHON:-python}

if [ $toy = 1 ]; then
  common=(--toy); giant=(--toy --grad_ckpt); comp=(--toy --runs compile)
  T_SIDE=${T_SIDE:-50}; T_GIANT=${T_GIANT:-50}; T_COMPILE=${T_COMPILE:-50}; T_RECIPE=${T_RECIPE:-120}; T_EVAL=${T_EVAL:-120}; T_FSDP=${T_FSDP:-150}; fsdp_dev=cpu
  evalargs=(--toy --images 256 --reps 1)
else
  $py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'bench/gpu_check.sh needs a CUDA GPU; on the CPU run: bench/gpu_check.sh --toy')" || exit 1
  common=(--models vit_base:16 vit_large:16 vit_huge:14 --batch 128)
  giant=(--models vit_giant:16 --batch 128 --grad_ckpt)
  comp=(--models ${COMPILE_MODELS:-vit_base:16} --batch 128 --runs compile)
  T_SIDE=${T_SIDE:-130}; T_GIANT=${T_GIANT:-80}; T_COMPILE=${T_COMPILE:-140}; T_RECIPE=${T_RECIPE:-110}; T_EVAL=${T_EVAL:-60}; T_FSDP=${T_FSDP:-90}; fsdp_dev=cuda
  evalargs=(--device cuda)
fi
recipe_set=(${RECIPE_SET:-})
off=()
if [ -n "$official" ]; then
  [ -f "$official/src/models/vision_transformer.py" ] || { echo "bench/gpu_check.sh: OFFICIAL=$official has no src/models/vision_transformer.py: give the root of a facebookresearch/ijepa checkout (the folder holding src/)." >&2; exit 2; }
  off=(--official "$official"); comp+=(--official "$official")
else
  echo "note: no OFFICIAL path: the official runs are skipped (ours only)." >&2
fi

{ date '+%Y-%m-%d %H:%M:%S %Z'; git rev-parse --short HEAD 2>/dev/null; git status --short 2>/dev/null | head -20
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  [ -n "$official" ] && git -C "$official" rev-parse HEAD 2>/dev/null | sed 's/^/official commit /'
} > "$out/machine.txt" 2>&1
printf 'part\trc\tseconds\n' > "$out/status.tsv"
failed=0

part() {  # part NAME SECONDS COMMAND...: run it under `timeout`, log it, record its exit code and wall time
  local name=$1 limit=$2; shift 2
  echo "== $name (at most ${limit} s): $*"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$name" "$rc" $((SECONDS - t0)) >> "$out/status.tsv"
  [ "$rc" = 124 ] && echo "== $name: timed out after ${limit} s (its finished rows are in $out/$name.jsonl)"
  [ "$rc" = 0 ] || failed=1
}

part side "$T_SIDE" $py bench/gpu_step.py "${common[@]}" "${off[@]}" --out "$out/side.jsonl"
part giant "$T_GIANT" $py bench/gpu_step.py "${giant[@]}" "${off[@]}" --out "$out/giant.jsonl"
part compile "$T_COMPILE" $py bench/gpu_step.py "${comp[@]}" --out "$out/compile.jsonl"
if [ -z "$data" ]; then
  echo "note: no CIFAR10 (or IJEPA_DATA) path: the recipe part is skipped." >&2
  printf 'recipe\tskipped\t0\n' >> "$out/status.tsv"
elif [ $toy = 1 ]; then
  part recipe "$T_RECIPE" $py bench/gpu_recipe.py --toy --quiet --data "$data" --out "$out/recipe" "${recipe_set[@]}"
else
  part recipe "$T_RECIPE" bash bench/gpu_recipe.sh "$data" "${RECIPE_MINUTES:-1.25}" --out "$out/recipe" --results "$out/recipe.jsonl" "${recipe_set[@]}"
fi
if [ -f bench/eval_cost.py ]; then
  ck=$out/recipe/run/latest.pt
  if [ $toy = 0 ] && [ -f "$ck" ]; then evalargs+=(--ckpt "$ck" --data "$data"); elif [ $toy = 0 ]; then evalargs+=(--toy); fi
  part eval "$T_EVAL" $py bench/eval_cost.py "${evalargs[@]}" --results "$out/eval.jsonl"
else
  echo "note: bench/eval_cost.py does not exist yet: the eval part is skipped." >&2
  printf 'eval\tskipped\t0\n' >> "$out/status.tsv"
fi

if [ -z "$data" ]; then
  printf 'fsdp\tskipped\t0\n' >> "$out/status.tsv"
else
  fsdp_run=(torchrun --standalone --nproc_per_node "${FSDP_GPUS:-1}" -m ijepa_edu.train --preset cifar10_tiny --data "$data"
            --out "$out/fsdp" --device "$fsdp_dev")
  part fsdp "$T_FSDP" bash -c '"$@" --overwrite --max_steps 4 batch_size=64 fsdp=true knn_every=1 eval_probes=knn eval_train_images=1000 &&
                               "$@" --resume --max_steps 6 batch_size=64 fsdp=true eval_probes=' _ "${fsdp_run[@]}"
fi

cat "$out"/side.jsonl "$out"/giant.jsonl "$out"/compile.jsonl 2>/dev/null > "$out/all.jsonl"
[ -s "$out/all.jsonl" ] && $py bench/gpu_step.py --table "$out/all.jsonl" > "$out/table.md" && cat "$out/table.md"
echo "== parts:"; cat "$out/status.tsv"; echo "== results in $out"
exit $failed
