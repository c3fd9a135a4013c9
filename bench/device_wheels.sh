#!/usr/bin/env bash
# Wheels for the device machine (see the device tool's README): its python3 is 3.12 with torch,
# timm, torchvision, numpy, Pillow, typer, rich, PyYAML, matplotlib and safetensors already
# there; these are the packages cloudsweep needs that its image lacks, at the versions this
# checkout's .venv runs. They go to .whl/ (git-ignored; under the 64 MiB a call may carry).
#
#   bash bench/device_wheels.sh          # here, once
#   then, on the device (`run` with carry [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && \
#       PYTHON=python3 bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
NEEDS="optuna optuna-dashboard bottle sqlalchemy alembic mako colorlog rasterio affine cligj
       click-plugins segmentation-models-pytorch pydantic pydantic-core annotated-types
       typing-inspection typing-extensions"
# shellcheck disable=SC2086  # one word per package
pins=$("$PY" -c 'import sys; from importlib.metadata import version as v
print(" ".join(f"{n}=={v(n)}" for n in sys.argv[1:]))' $NEEDS)
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $pins
ls .whl
du -sh .whl
