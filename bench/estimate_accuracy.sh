#!/usr/bin/env bash
# estimate_accuracy: how close `brainjar estimate` comes to the memory a model really takes, and
# what each load mode (mmap or not, repack or not) costs in memory and speed.
#
# Makes TinyLlama- and Mistral-7B-shaped Q4_0 models with `brainjar mkmodel` (synthetic weights,
# real shapes), then for each model, jar size and load mode runs `brainjar estimate --measure`:
# the model is loaded as the engine loads it, the jars are filled in the engine's steps, and the
# growth of anonymous memory plus the model file's resident pages is compared with the estimate
# (and with the seed's file size x 1.5). Too slow for ctest (minutes): run it by hand.
#
# usage: bench/estimate_accuracy.sh [tinyllama|mistral|all]     (default: tinyllama)
# env:   BRAINJAR  the binary (default build/brainjar)
#        ESTIMATE  the estimate command (default "$BRAINJAR estimate")
#        MODELS    where the models go (default /tmp/bj-bench-models)
#        CTXS      jar sizes in tokens (default "512 2048")
#        MODES     load modes (default: all four); SPEED=1 adds a 512-token prompt and 32 decode
#                  steps per mode for tokens/s without filling the jars
set -euo pipefail

BRAINJAR=${BRAINJAR:-build/brainjar}
ESTIMATE=${ESTIMATE:-"$BRAINJAR estimate"}
MODELS=${MODELS:-/tmp/bj-bench-models}
CTXS=${CTXS:-"512 2048"}
WHICH=${1:-tinyllama}
MKMODEL_ARGS=${MKMODEL_ARGS:-}
declare -a MODES
if [ -n "${MODES_LIST:-}" ]; then
    IFS=',' read -r -a MODES <<<"$MODES_LIST"
else
    MODES=("" "--no-mmap" "--no-repack" "--no-mmap --no-repack")
fi

mkdir -p "$MODELS"
make_model() { # preset -> path
    local out="$MODELS/$1-q4_0.gguf"
    if [ ! -s "$out" ]; then
        echo "making $out" >&2
        # shellcheck disable=SC2086
        $BRAINJAR mkmodel --preset "$1" --type Q4_0 --quiet $MKMODEL_ARGS -o "$out" >&2
    fi
    echo "$out"
}

presets=()
case "$WHICH" in
    tinyllama) presets=(tinyllama-1.1b) ;;
    mistral) presets=(mistral-7b) ;;
    all) presets=(tinyllama-1.1b mistral-7b) ;;
    *) echo "usage: $0 [tinyllama|mistral|all]" >&2; exit 2 ;;
esac

mode_name() { [ -z "$1" ] && echo "mmap+repack" || echo "$1" | sed 's/--//g; s/ /,/g'; }

printf '%-16s %6s %-22s %11s %11s %8s %10s %8s %10s %10s\n' model ctx mode "est MiB" "meas MiB" "err %" "seed err %" "load s" "prompt t/s" "decode t/s"
for p in "${presets[@]}"; do
    model=$(make_model "$p")
    for ctx in $CTXS; do
        for mode in "${MODES[@]}"; do
            # shellcheck disable=SC2086
            line=$($ESTIMATE "$model" --ctx "$ctx" $mode --measure 2>/dev/null | grep ' summary ' || true)
            [ -z "$line" ] && { echo "$p ctx $ctx $(mode_name "$mode"): measurement failed" >&2; continue; }
            get() { echo "$line" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
            printf '%-16s %6s %-22s %11s %11s %8s %10s %8s %10s %10s\n' "$p" "$ctx" "$(mode_name "$mode")" \
                "$(get predicted_mib)" "$(get measured_mib)" "$(get error_pct)" "$(get heuristic_pct)" \
                "$(get load_s)" "$(get prompt_tps)" "$(get decode_tps)"
        done
    done
    if [ -n "${SPEED:-}" ]; then
        echo "speed ($p: one 512-token prompt, then 32 single-token steps; jars not filled):"
        for mode in "${MODES[@]}"; do
            # shellcheck disable=SC2086
            line=$($ESTIMATE "$model" --ctx 1024 $mode --measure --no-fill --first-batch 512 --decode-steps 32 \
                   2>/dev/null | grep ' summary ' || true)
            get() { echo "$line" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
            printf '  %-22s load %6s s  prompt %8s t/s  decode %7s t/s  resident %8s MiB\n' "$(mode_name "$mode")" \
                "$(get load_s)" "$(get prompt_tps)" "$(get decode_tps)" "$(get measured_mib)"
        done
    fi
done
