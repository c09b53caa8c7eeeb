#!/usr/bin/env bash
# Fresh Debian/Ubuntu machine -> .venv with the project installed. Idempotent; used by `make`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(pkg-config libturbojpeg0-dev libopencv-dev)  # build prerequisites of ffcv

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "bootstrap: installing the project and its dependencies into $VENV (torch is large: a few minutes the first time)"
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test]"
touch "$VENV/.installed"
