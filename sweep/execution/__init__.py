"""Running a study: workers, trial processes, the study-wide target, progress.

Modules:
    runner         `run_study`: validate, create or resume the study, run local workers
    join           `sweep worker`: join a study, creating it from its spec when missing
    workers        one worker's loop (`work`), local worker processes, GPU assignment
    objective      trial → RunConfig → a trial process → metric, failure classes
    trial_process  each trial in a fresh child of a torch-preloaded forkserver
    target         an exact study-wide target of finished trials, retries of killed trials
    lineage        which trial a retry repeats (Optuna's retry system attributes)
    progress       the live view of `sweep run`
    trial_log      one line per trial start and end when not on a terminal
"""
