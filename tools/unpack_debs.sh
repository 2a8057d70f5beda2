#!/usr/bin/env bash
# Unpack Debian packages into a directory without root: the named packages plus whichever
# of their dependencies this machine lacks (apt's own plan: `apt-get install --simulate`).
# The .debs are cached outside git; `dpkg -x` unpacks without running maintainer scripts.
#
#   tools/unpack_debs.sh DEST CACHE PACKAGE...
#
# If the package lists are empty (a fresh machine), root refreshes them once; anyone
# else is told to.
set -euo pipefail
dest=$1 cache=$2
shift 2
mkdir -p "$dest" "$cache"

# apt's plan: the packages it would install (Inst lines); fails, saying why, when apt does.
plan() {
  local out
  out=$(apt-get install --simulate --no-install-recommends "$@" 2>&1) || { echo "$out" >&2; return 1; }
  awk '/^Inst /{print $2}' <<<"$out"
}

if ! wanted=$(plan "$@"); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq  # empty package lists on a fresh machine
    wanted=$(plan "$@")
  else
    echo "unpack_debs: apt cannot plan $*; if its package lists are empty, run 'apt-get update' as root" >&2
    exit 1
  fi
fi
if [ -z "$wanted" ]; then
  dpkg -s "$@" >/dev/null 2>&1 || { echo "unpack_debs: apt plans nothing, yet $* are not installed" >&2; exit 1; }
  echo "unpack_debs: $* installed on this machine"
  exit 0
fi
missing=()
for pkg in $wanted; do
  compgen -G "$cache/${pkg}_*.deb" >/dev/null || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  # As root, apt would hand the download to its _apt user, which cannot write to a cache
  # under root's home (a warning, then it downloads as root anyway): say root up front.
  sandbox=()
  [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$cache" && apt-get download "${sandbox[@]}" "${missing[@]}" >/dev/null)
fi
for pkg in $wanted; do
  dpkg -x "$(ls -t "$cache/${pkg}"_*.deb | head -n 1)" "$dest"
done
echo "unpack_debs: $(wc -w <<<"$wanted") packages into $dest"
