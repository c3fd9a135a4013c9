"""Imported by the trial forkserver (see sweep.execution.trial_process.PRELOAD): loads smp's
loss classes once in the server instead of once per trial. No torch work here: starting
torch's thread pools before forking would be unsafe for the children.
"""

from cloudseg import smp_losses

smp_losses()
