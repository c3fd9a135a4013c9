"""Final fits: from a study's winner to a benchmark answer on the test split.

Modules: `queue` (the final-fit study `<study>.final` beside the search study, its spec: the
search spec on the full training set for a full budget, and the queued fits), `run` (run the
queued fits here and on any worker, resumable and retried), `scoring` (predict the test split,
score it with `cloudseg evaluate`'s protocol at 12/255 and the bundle's threshold, rank
correlation with the search), `report` and `figures` (Markdown + self-contained HTML),
`card` (the model card's section), `finalize` (`sweep finalize`: all of it in order).
"""
