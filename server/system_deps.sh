#!/usr/bin/env bash
# Debian libraries the bundled tritonserver needs outside the venv:
#   libpython3.X - the Python backend stub links against it
#   libb64-0d    - perf_analyzer (from tritonclient) links against it
#   cmake, g++, rapidjson-dev, googletest - build Triton's native onnxruntime backend
#                  (server/native_backend.py), which serves the container repository here
# Installs them with apt-get when running as root, otherwise says what to install.
set -euo pipefail
pyver="${1:-3.11}"
missing=()
ldconfig -p | grep -q "libpython${pyver}.so.1.0" || missing+=("libpython${pyver}")
ldconfig -p | grep -q "libb64.so.0d" || missing+=("libb64-0d")
command -v cmake >/dev/null || missing+=("cmake")
command -v g++ >/dev/null || missing+=("g++")
[ -d /usr/include/rapidjson ] || missing+=("rapidjson-dev")
[ -d /usr/src/googletest ] || missing+=("googletest")
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (Debian packages tritonserver needs) ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "error: missing Debian packages: ${missing[*]}. Install them: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
