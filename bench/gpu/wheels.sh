#!/usr/bin/env bash
# Download the wheels the GPU machine lacks (bench/gpu/requirements.txt) into .whl/ (git-ignored)
# for its CPython 3.12 on x86-64 Linux. Then, on the device (`run` with carry [".whl"]):
#   python3 -m pip install --no-index --find-links .whl --no-deps -r bench/gpu/requirements.txt
#   python3 -m pip install --no-index --no-deps --no-build-isolation -e .
#   simudy bench gpu-suite --data ../shared/data --budget-seconds 540
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .whl \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any -r bench/gpu/requirements.txt
du -sh .whl
