#!/usr/bin/env bash
# Debian libraries the bundled tritonserver needs outside the venv:
#   libpython3.X - the Python backend stub links against it
#   libb64-0d    - perf_analyzer (from tritonclient) links against it
#   cmake, g++, rapidjson-dev, googletest - build Triton's native onnxruntime backend
#                  (server/native_backend.py), which serves the container repository here
#   prometheus   - promtool and a real Prometheus for the chart's rules and dashboard
#                  (tests/k8s/test_rules.py, test_prometheus.py; without it they skip)
# Installs them with apt-get when running as root, otherwise says what to install.
set -euo pipefail
pyver="${1:-3.11}"
missing=()
tools=()  # for the tests only: a non-root user without them gets a note, not an error
ldconfig -p | grep -q "libpython${pyver}.so.1.0" || missing+=("libpython${pyver}")
ldconfig -p | grep -q "libb64.so.0d" || missing+=("libb64-0d")
command -v cmake >/dev/null || missing+=("cmake")
command -v g++ >/dev/null || missing+=("g++")
[ -d /usr/include/rapidjson ] || missing+=("rapidjson-dev")
[ -d /usr/src/googletest ] || missing+=("googletest")
# Only its binaries are wanted: no recommended node exporter. (Where systemd runs, the package also
# starts a prometheus service on :9090; the tests start their own on a free port.)
command -v promtool >/dev/null || tools+=("prometheus")
[ ${#missing[@]} -eq 0 ] && [ ${#tools[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  all=("${missing[@]}" "${tools[@]}")
  echo "installing ${all[*]} (Debian packages tritonserver and the tests need) ..."
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ ${#tools[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tools[@]}" >/dev/null
elif [ ${#missing[@]} -eq 0 ]; then
  echo "note: promtool is missing, so the chart's rules tests skip: sudo apt-get install --no-install-recommends prometheus" >&2
else
  echo "error: missing Debian packages: ${missing[*]}. Install them: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
