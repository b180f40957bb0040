# Sourced, not run: install_debs installs the Debian packages named that are missing, and does
# nothing when all are there. Arguments before `--` go to apt-get install; it says what it does
# through the caller's `say`. Without root it stops, naming what is missing.
install_debs() {
  local opts=() missing=() p
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}
