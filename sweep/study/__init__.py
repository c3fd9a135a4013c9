"""The study definition: what a spec says and how it becomes Optuna's objects.

Modules:
    spec        `StudySpec`, validated once at load (file and field named in every error);
                the shipped specs live in sweep/studies/ (package data)
    space       the conditional search space, drawn define-by-run
    strategies  what samplers and pruners share: settings + factory, the `name` union
    samplers    SAMPLERS and `build_sampler`
    pruners     PRUNERS (with the `patience` wrapper) and `build_pruner`
    seeding     `TrialSeeded`: a sampler seeded per trial number
"""
