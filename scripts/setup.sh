#!/usr/bin/env bash
# Set up computelimits on a fresh Debian/Ubuntu machine: the Fashion-MNIST package (when missing),
# a virtual environment in .venv, and the project with its test extra.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST_DIR/t10k-labels-idx1-ubyte.gz" ] && [ -z "${COMPUTELIMITS_FASHION_MNIST:-}" ]; then
  echo "setup: installing Debian's dataset-fashion-mnist into $FMNIST_DIR" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
# The stamp records what was installed, so an unchanged pyproject.toml skips pip entirely.
stamp=.venv/.computelimits-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${PIP_CONSTRAINT:-}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: pip install -e '.[test]' (PyTorch is large: this takes a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/python)" >&2
