#!/usr/bin/env bash
# The GPU measurements of the README's "On a GPU machine", in one command for a machine
# that has only this repository: no install, no audio, no network. It needs python3 with
# torch, torchvision, numpy, pandas, scipy, scikit-learn and tqdm (no soundfile, soxr or
# librosa: features come from a pack), and the pack built where the audio is:
#
#   python -m esc50kit pack --data ../shared/data/ESC-10 --profile full --out artifacts/packs/esc10-full.npz
#
# then, on the GPU machine, from the repository root (carry artifacts/packs):
#
#   bash benchmarks/gpu_session.sh OUT_DIR      # default benchmarks/results/gpu
#
# It writes, each also printed:
#   machine.txt          GPU, driver, torch and CUDA
#   train-loop-<p>.txt   esc50kit's fit against the plain PyTorch loop (last line: speed-up)
#   cv-<p>-esc10.txt     5-fold cross-validation of the profile from the pack, with wall time
#                        (last line: overall test accuracy)
# A run cut off by a time limit resumes when the script is started again (same run name).
#
# Smaller, for a CPU smoke test (run folders go to ARTIFACTS, default artifacts):
#   PROFILE=tiny EPOCHS=1 CLIPS=64 PACK=p.npz ARTIFACTS=/tmp/a bash benchmarks/gpu_session.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-benchmarks/results/gpu}
profile=${PROFILE:-full}
pack=${PACK:-artifacts/packs/esc10-$profile.npz}
clips=${CLIPS:-1200}
artifacts=${ARTIFACTS:-artifacts}
py=${PYTHON:-python3}

if [ ! -f "$pack" ]; then
  echo "gpu_session: $pack not found. Build it where the audio is:" >&2
  echo "  python -m esc50kit pack --data ../shared/data/ESC-10 --profile $profile --out $pack" >&2
  echo "and bring artifacts/packs along (the device tool: carry [\"artifacts/packs\"])." >&2
  exit 2
fi
mkdir -p "$out"
# The checkout itself, not an installed copy: nothing is installed on such a machine.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: none (no NVIDIA GPU)"
  "$py" -c 'import platform, torch
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"device {device}, {torch.get_num_threads()} CPU threads")'
} | tee "$out/machine.txt"

echo "== training loop: esc50kit fit against the plain PyTorch loop ($profile, $clips clips)"
"$py" benchmarks/bench_train_loop.py --profile "$profile" --clips "$clips" ${EPOCHS:+--epochs "$EPOCHS"} \
  2>&1 | tee "$out/train-loop-$profile.txt"

echo "== $profile cross-validation on ESC-10 from $pack"
start=$SECONDS
"$py" benchmarks/train_cv.py --data "$pack" --profile "$profile" ${EPOCHS:+--epochs "$EPOCHS"} \
  --artifacts "$artifacts" --run-name "gpu-$profile-esc10" --no-progress 2>&1 | tee "$out/cv-$profile-esc10.txt"
echo "command: bash benchmarks/gpu_session.sh; cross-validation wall time $((SECONDS - start)) s" \
  | tee -a "$out/cv-$profile-esc10.txt"
