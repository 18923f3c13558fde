#!/usr/bin/env bash
# Installs simple-time-service into a virtual environment. Idempotent: re-running upgrades in place.
#
#   ./install.sh                 # runtime install into ./.venv
#   ./install.sh --dev           # plus the test dependencies (editable install of this checkout)
#   ./install.sh --prefix DIR    # another virtual environment location
#
# Needs Python >= 3.11 with the venv module (Debian: apt-get install python3 python3-venv).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix="$here/.venv"
dev=0
python=${PYTHON:-python3}

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,9s/^# \{0,1\}//p' "$0"
}

while (($#)); do
  case "$1" in
    --dev) dev=1 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

say "checking $python"
command -v "$python" >/dev/null 2>&1 \
  || die "$python not found: install Python >= 3.11 (Debian: apt-get install python3 python3-venv) or set PYTHON"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python >= 3.11 required, found $("$python" -c 'import platform; print(platform.python_version())')"
"$python" -c 'import venv, ensurepip' 2>/dev/null \
  || die "the Python venv module is missing (Debian: apt-get install python3-venv)"

if [ -x "$prefix/bin/python" ]; then
  say "reusing virtual environment $prefix"
else
  say "creating virtual environment $prefix"
  "$python" -m venv "$prefix" || die "could not create a virtual environment in $prefix"
fi

say "upgrading pip"
"$prefix/bin/python" -m pip install --quiet --upgrade pip || die "pip upgrade failed"

if ((dev)); then
  say "installing simple-time-service with test dependencies (editable)"
  "$prefix/bin/python" -m pip install --quiet -e "$here[dev]" || die "pip install failed"
else
  say "installing simple-time-service"
  "$prefix/bin/python" -m pip install --quiet --upgrade "$here" || die "pip install failed"
fi

say "installed $("$prefix/bin/simple-time-service" version) into $prefix"
