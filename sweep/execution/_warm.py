"""Imported by the trial forkserver (see sweep.execution.trial_process.PRELOAD): loads smp's
loss classes once in the server instead of once per trial. No torch work here: starting
torch's thread pools before forking would be unsafe for the children.

It also makes the server, and so every trial it forks, ignore SIGTERM: a scheduler (SLURM's
scancel, preemption, time limit) signals every process of a job, and the trial's end is the
worker's to decide (sweep.execution.preemption kills it and queues it again). A SIGKILL still
ends them; a server or trial whose worker is gone exits by itself.
"""

import signal

from cloudseg import smp_losses

smp_losses()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
