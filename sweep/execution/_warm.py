"""Imported by the trial forkserver (see sweep.execution.trial_process.PRELOAD): pays matplotlib's
first-figure cost and the loading of smp's loss classes once in the server instead of once per
trial. No torch work here: starting torch's thread pools before forking would be unsafe for the
children.
"""

from cloudseg import smp_losses
from sweep.artifacts import warm_plotting

warm_plotting()
smp_losses()
