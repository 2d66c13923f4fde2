#!/usr/bin/env bash
# Issue 12, item 5: cifar10_small on one GPU for at most 8 minutes, with its learning curve printed.
#   bench/gpu_recipe.sh PATH_TO_CIFAR10 [MINUTES] [key=value ...]
# Needs CUDA (it says so and stops otherwise); `python bench/gpu_recipe.py --toy` runs the same code on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bench/gpu_recipe.sh PATH_TO_CIFAR10 [MINUTES] [key=value ...]}; shift
minutes=${1:-8}; [ $# -gt 0 ] && shift
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'bench/gpu_recipe.sh needs a CUDA GPU; on the CPU run: python bench/gpu_recipe.py --toy --data ...')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python bench/gpu_recipe.py --data "$data" --minutes "$minutes" "$@"
