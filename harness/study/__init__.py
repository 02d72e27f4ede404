"""Running studies: the sweep (one Optuna search per seed under Ray Tune, ASHA stopping),
the trial (one method's training, reported each epoch, checkpointed), the searcher and
scheduler, the results writer and progress lines, teachers (cached or trained), checks
before a run, the cluster connection, trackers, and measuring finished studies again
(``remeasure``, ``windows``), which reads trials' checkpoints the way a trial writes them.

The one layer that imports Ray. May import ``spec``, ``data``, ``networks``, ``store``,
``measure``, ``errors``, ``methods`` and ``reports.load`` (the study states it reads).
"""
