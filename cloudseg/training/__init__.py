"""Training one model: from a RunConfig to weights, records and a checkpoint bundle.

    build       `run_training`: data, split, subset, statistics, model, loss, loaders → fit
    loop        `fit`: the training loop, read top to bottom; `validate`; `Callback`
    device      CUDA (AMP, channels_last, torch.compile) or the CPU, decided once per run
    schedule    learning-rate schedules
    checkpoint  safetensors bundles (config + weights + identity), `load_bundle`
    results     `FitResult` and `EpochRecord`: what a run returns
"""
