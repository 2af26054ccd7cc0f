#!/usr/bin/env bash
# One repeatable training run on a lent GPU machine (torch/JAX, numpy, scipy, h5py; no TensorFlow,
# SimpleITK, nilearn or matplotlib there). Run from the repository root, carrying two ignored paths:
#   wheels/         keras, namex, optree (and their pure-Python needs): pip download keras --no-deps ...
#   templates.npz   the simulator's anatomy cache: pet-pvc simulate --save-templates templates.npz
# Subjects are simulated on the machine's CPU cores while nothing else runs, then the production
# ResUNet (GroupNorm, trained on 144^3 windows: the inference window) trains for a fixed time.
# Everything lands in $OUT (model folder, loss log, state); plot the learning curve back here.
# WARM_START=<model folder carried along> starts every layer of the same name and shape from it
# (e.g. Resources/Models/resunet3d-amyloid-pvc, tracked, so it travels with the tree).
# Try it tiny on the CPU first:  TINY=1 KERAS_BACKEND=tensorflow OUT=/tmp/gpu-try scripts/gpu_train.sh
set -euo pipefail
OUT=${OUT:?set OUT to the output folder}
export KERAS_BACKEND=${KERAS_BACKEND:-torch}
export PYTHONPATH=PETPartialVolumeCorrection${PYTHONPATH:+:$PYTHONPATH}
if [ -d wheels ]; then python -m pip install --quiet --no-deps --no-index wheels/*.whl; fi
if [ -n "${TINY:-}" ]; then
  size=(--simulate-train 2 --simulate-val 1 --processes 2 --patch-size 32 --random-patches 1
        --depth 1 --base-filters 4 --max-filters 8 --max-epochs 1)
else
  size=(--simulate-train "${N_TRAIN:-160}" --simulate-val "${N_VAL:-8}" --processes "${PROCESSES:-15}"
        --patch-size 144 --random-patches 4 --batch-size 4 --learning-rate 3e-4
        --max-epochs 300 --patience 15 --max-minutes "${MINUTES:-6}")
fi
python -m PETPartialVolumeCorrectionLib.cli train -o "$OUT/run" --templates templates.npz \
  --no-grid-patches --progress lines "${size[@]}" ${WARM_START:+--warm-start "$WARM_START"}
