"""The study definition: what a spec says and how it becomes Optuna's objects.

    spec        `StudySpec`, validated once at load (file and field named in every error);
                the shipped specs live in sweep/studies/ (package data)
    space       the conditional search space, drawn define-by-run
    strategies  registries of samplers and pruners with their typed settings
"""
