#!/usr/bin/env bash
# The Debian package: `make deb`'s .deb builds, lintian finds no error, its files are where Debian
# puts them (binary, unit, conffile, manual pages, completion), the binary it holds runs the hive
# of its /etc/brainjar/brainjar.hive, its unit passes `systemd-analyze verify`, the manual pages
# format without a warning. As root with CI=true (or BJ_TEST_INSTALL=1) it is also installed for
# real with dpkg, checked, and purged: nothing of it is left.
#   tests/package/test_deb.sh WORKDIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:?usage: test_deb.sh WORKDIR}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

deb=$("$root/scripts/make-deb" "$work/deb" | tail -1)
[ -f "$deb" ] || fail "no package made"
ok "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

lint=$(lintian --fail-on error "$deb" 2>&1 | grep -v "running with root privileges" || true)
lintian --fail-on error "$deb" >/dev/null 2>&1 || fail "lintian reports errors: $lint"
ok "lintian: no errors${lint:+ ($(echo "$lint" | wc -l) other tags: $(echo "$lint" | tr '\n' ' '))}"

scratch=$work/root
dpkg -x "$deb" "$scratch"
for f in usr/bin/brainjar lib/systemd/system/brainjar.service etc/brainjar/brainjar.hive \
         usr/share/man/man1/brainjar.1.gz usr/share/man/man5/brainjar-hive.5.gz \
         usr/share/bash-completion/completions/brainjar usr/share/doc/brainjar/copyright \
         usr/share/brainjar/ggml-vocab-llama-spm.gguf; do
    [ -e "$scratch/$f" ] || fail "/$f is not in the package"
done
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/brainjar/brainjar.hive "$work/control/conffiles" || fail "/etc/brainjar/brainjar.hive is not a conffile"
ok "files in place; /etc/brainjar/brainjar.hive is a conffile"

for m in usr/share/man/man1/brainjar.1.gz usr/share/man/man5/brainjar-hive.5.gz; do
    warn=$(zcat "$scratch/$m" | LC_ALL=C.UTF-8 groff -ww -z -man -Tutf8 2>&1 || true)
    [ -z "$warn" ] || fail "$m: $warn"
done
bash -n "$scratch/usr/share/bash-completion/completions/brainjar" || fail "the completion script does not parse"
ok "manual pages format without warnings; the completion parses"

# The unit, with the binary where this scratch root has it.
sed "s|/usr/bin/brainjar|$scratch/usr/bin/brainjar|" "$scratch/lib/systemd/system/brainjar.service" \
    >"$work/brainjar.service"
systemd-analyze verify --man=no "$work/brainjar.service" || fail "systemd-analyze verify"
ok "systemd-analyze verify: clean"

bin=$scratch/usr/bin/brainjar
"$bin" --version | grep -q "^brainjar " || fail "brainjar --version"
out=$("$bin" run --hive "$scratch/etc/brainjar/brainjar.hive" --data-dir "$work/data" --no-web --pace 0 \
      --duration 5 --events jsonl </dev/null 2>"$work/run.err") || fail "the packaged hive does not run: $(tail -5 "$work/run.err")"
for b in SUBJECT OBSERVER GOD; do
    grep -q "\"type\":\"thought\".*\"brain\":\"$b\"" <<<"$out" || fail "$b said nothing in 5 s"
done
"$bin" mkmodel --preset tiny --quiet -o "$work/m.gguf" 2>/dev/null && fail "mkmodel found a vocabulary outside the package's path?" || true
ok "the packaged binary runs its hive: SUBJECT, OBSERVER and GOD think"

if [ "$(id -u)" -eq 0 ] && { [ "${CI:-}" = true ] || [ -n "${BJ_TEST_INSTALL:-}" ]; }; then
    if dpkg-query -W -f='${Status}' brainjar 2>/dev/null | grep -q "install ok installed"; then
        fail "brainjar is installed on this machine already: not touching it"
    fi
    DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1 || fail "dpkg -i: $(tail -5 "$work/dpkg-i.log")"
    getent passwd brainjar >/dev/null || fail "no system user brainjar"
    /usr/bin/brainjar --version >/dev/null || fail "the installed binary does not run"
    systemd-analyze verify --man=no /lib/systemd/system/brainjar.service || fail "verify the installed unit"
    man -w brainjar >/dev/null 2>&1 || [ -f /usr/share/man/man1/brainjar.1.gz ] || fail "man brainjar"
    /usr/bin/brainjar mkmodel --preset tiny --quiet -o "$work/m.gguf" || fail "mkmodel with the packaged vocabulary"
    DEBIAN_FRONTEND=noninteractive dpkg --purge brainjar >"$work/dpkg-purge.log" 2>&1 || fail "dpkg --purge: $(tail -5 "$work/dpkg-purge.log")"
    for f in /usr/bin/brainjar /etc/brainjar /lib/systemd/system/brainjar.service /usr/share/brainjar; do
        [ ! -e "$f" ] || fail "$f is left after the purge"
    done
    ! getent passwd brainjar >/dev/null || fail "the user brainjar is left after the purge"
    ok "installed with dpkg, checked, purged: nothing left"
else
    echo "skip: the real install (root with CI=true or BJ_TEST_INSTALL=1 does it)"
fi
echo "package test passed"
