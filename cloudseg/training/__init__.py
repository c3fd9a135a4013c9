"""Training one model: from a RunConfig to weights, records and a checkpoint bundle.

build       `run_training` = `build_run` (data, split, subset, statistics, model, loss,
loaders) + `fit`
loop        `fit`: set up, then per epoch train → validate → record → callbacks → stop?
epoch       one epoch's training steps and validation (`validate`), as an `EpochRecord`
callbacks   the `Callback` protocol and `Checkpoint` (best and last bundles)
device      CUDA (AMP, channels_last, torch.compile) or the CPU, decided once per run
schedule    learning-rate schedules
checkpoint  safetensors bundles (config + weights + identity), `load_bundle`
results     `FitResult` and `EpochRecord`: what a run returns
thresholds  each epoch's figures at the fixed, official (12/255) and tuned thresholds
"""
