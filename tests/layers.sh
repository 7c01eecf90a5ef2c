#!/usr/bin/env bash
# layers.sh: checks who includes whom in src/ (docs/ARCHITECTURE.md, "Layers").
#
#   base    includes only base
#   model   base, model
#   engine  base, model, engine
#   mem     base, model, mem
#   hive    base, model, engine, mem, hive
#   sinks   base, model, hive, mem, sinks (never an engine header); sinks/web/ is a wing of sinks
#   app     anything
# and only src/app may include config.h (struct bj_config), and no header brings itself in again
# through the headers it includes (an include circle: two files that need each other are one
# concept cut in the wrong place).
#
# Every #include "..." of src/<layer>/*.{c,h} is checked, and so is everything it brings in
# through other headers (a sink that includes a hive header which included engine.h breaks the
# rule as surely as one that includes engine.h). An include that names no header of src/ fails
# too (a header moved without its users). Prints one line per broken rule, naming the file, and
# exits 1; exits 0 when every rule holds.
#
# Usage: tests/layers.sh [SRC_DIR]      (default: the src/ next to this script's tests/)
#        tests/layers.sh --self-test    (shows that broken rules are caught)
set -u

declare -A ALLOWED=(
  [base]="base"
  [model]="base model"
  [engine]="base model engine"
  [mem]="base model mem"
  [hive]="base model engine mem hive"
  [sinks]="base model hive mem sinks"
  [app]="base model engine mem hive sinks app"
)
LAYERS="base model engine mem hive sinks app"

self_test() {
  local tmp rc out
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  for l in $LAYERS; do mkdir -p "$tmp/$l"; done
  printf '#include "util.h"\n' > "$tmp/base/log.c"
  : > "$tmp/base/util.h"
  printf '#include "util.h"\n' > "$tmp/engine/engine.h"
  printf '#include "engine.h"\n' > "$tmp/hive/hive.h"
  : > "$tmp/app/config.h"
  printf '#include "hive.h"\n' > "$tmp/sinks/web.c"        # engine.h through hive.h
  mkdir -p "$tmp/sinks/wing"
  printf '#include "engine.h"\n' > "$tmp/sinks/wing/room.c" # a wing keeps its layer's rules
  printf '#include "config.h"\n' > "$tmp/mem/budget.c"     # config outside app
  printf '#include "hive.h"\n' > "$tmp/engine/brain.c"     # engine -> hive
  printf '#include "engine.h"\n' > "$tmp/base/bus.c"       # base -> engine
  printf '#include "gone.h"\n' > "$tmp/model/plan.c"       # no such header
  printf '#include "hive.h"\n#include "config.h"\n' > "$tmp/app/main.c"  # fine
  printf '#include "ring_b.h"\n' > "$tmp/sinks/ring_a.h"   # a circle: ring_a.h -> ring_b.h -> ring_a.h
  printf '#include "ring_a.h"\n' > "$tmp/sinks/ring_b.h"
  out=$("$0" "$tmp" 2>&1); rc=$?
  [ -n "${LAYERS_VERBOSE:-}" ] && echo "$out"
  local ok=1
  [ "$rc" -eq 1 ] || { echo "self-test: exit status $rc, expected 1"; ok=0; }
  for want in "sinks/web.c" "sinks/wing/room.c" "mem/budget.c" "engine/brain.c" "base/bus.c" "model/plan.c" \
              "sinks/ring_a.h"; do
    grep -q "^$want:" <<<"$out" || { echo "self-test: $want not reported"; ok=0; }
  done
  for clean in "app/main.c" "base/log.c" "hive/hive.h"; do
    if grep -q "^$clean:" <<<"$out"; then echo "self-test: $clean reported wrongly"; ok=0; fi
  done
  [ "$ok" -eq 1 ] || { echo "$out"; return 1; }
  echo "layers self-test: every broken rule caught"
}

if [ "${1:-}" = "--self-test" ]; then
  self_test
  exit $?
fi

SRC=${1:-$(cd "$(dirname "$0")/../src" && pwd)}
[ -d "$SRC" ] || { echo "layers.sh: no source directory $SRC"; exit 2; }

# Where each header lives: header name -> layer, and its path. A layer's folder may hold wings
# (folders of one concept, e.g. sinks/web/): they belong to that layer.
declare -A LAYER_OF PATH_OF
for l in $LAYERS; do
  [ -d "$SRC/$l" ] || continue
  while IFS= read -r h; do
    LAYER_OF[$(basename "$h")]=$l
    PATH_OF[$(basename "$h")]=$h
  done < <(find "$SRC/$l" -name '*.h' | sort)
done

# Direct includes of a file, space-separated.
includes() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | tr '\n' ' '; }

# The direct includes of every header of src/, read once.
declare -A INCS
for h in "${!LAYER_OF[@]}"; do
  INCS[$h]=$(includes "${PATH_OF[$h]}")
done

# Every header a file brings in (its direct includes given), directly or through other headers:
# sets CLOSURE to a space-separated list.
closure() {
  local -a queue=($1)
  local -A seen=()
  local h
  CLOSURE=""
  while [ ${#queue[@]} -gt 0 ]; do
    h=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "${seen[$h]+x}" ] && continue
    seen[$h]=1
    CLOSURE="$CLOSURE $h"
    [ -n "${INCS[$h]+x}" ] && queue+=(${INCS[$h]})
  done
}

bad=0
for l in $LAYERS; do
  [ -d "$SRC/$l" ] || continue
  while IFS= read -r f; do
    rel=${f#"$SRC"/}
    direct=" $(includes "$f") "
    closure "$direct"
    for h in $CLOSURE; do
      how="includes $h"
      case "$direct" in *" $h "*) ;; *) how="includes $h (through another header)" ;; esac
      if [ -z "${LAYER_OF[$h]+x}" ]; then
        case "$direct" in *" $h "*) echo "$rel: includes \"$h\", which is no header of src/"; bad=1 ;; esac
        continue
      fi
      hl=${LAYER_OF[$h]}
      case " ${ALLOWED[$l]} " in
        *" $hl "*) ;;
        *) echo "$rel: $how from the $hl layer; the $l layer may include only: ${ALLOWED[$l]}"; bad=1 ;;
      esac
      if [ "$h" = config.h ] && [ "$l" != app ]; then
        echo "$rel: $how; only src/app sees struct bj_config"; bad=1
      fi
    done
  done < <(find "$SRC/$l" \( -name '*.c' -o -name '*.h' \) | sort)
done
# Include circles: a header found again among what its own includes bring in.
for h in "${!LAYER_OF[@]}"; do
  closure "${INCS[$h]}"
  case " $CLOSURE " in
    *" $h "*) echo "${PATH_OF[$h]#"$SRC"/}: an include circle: $h comes back through the headers it includes"; bad=1 ;;
  esac
done

[ "$bad" -eq 0 ] && echo "layers: every include of $SRC keeps to its layer"
exit "$bad"
