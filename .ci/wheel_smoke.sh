#!/usr/bin/env bash
# Build kgc's wheel, install it into a fresh venv, and run the CLIs from a folder outside the checkout
# (issue 17: configs, manifests and published results must ship as package data).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/kgc-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== build the wheel"
python3 -m pip wheel -q --no-deps -w "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/kgc-*.whl)
echo "   $(basename "$wheel")"
echo "== install it into a fresh venv"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
cd "$work"  # outside the checkout: nothing may be found through the working folder or the source tree
export KGC_HOME="$work/home" KGC_RUNS="$work/runs"
run() { echo "\$ $*"; "$@"; }
py="$work/venv/bin/python"
kgc="$work/venv/bin/kgc"
if "$py" -c "import kgc, sys; sys.exit(0 if kgc.__file__.startswith('$repo') else 1)"; then
  echo "the wheel venv imports kgc from the checkout"; exit 1
fi
run "$kgc" --version
run "$kgc" data stats umls > "$work/stats.txt"  # not "| head": under pipefail a reader that quits early fails the step
head -5 "$work/stats.txt"
run "$py" -m kgc.pretrain --signals all --max-steps 3 --no-progress > "$work/pretrain.log"
tail -1 "$work/pretrain.log"
run "$kgc" finetune --dataset nations --from-scratch --max-time 20s --no-progress > "$work/finetune.log"
tail -2 "$work/finetune.log"
test -f "$(ls -d "$KGC_RUNS"/nations-finetune-*/ | head -1)/metrics.json"
echo "== wheel smoke passed"
