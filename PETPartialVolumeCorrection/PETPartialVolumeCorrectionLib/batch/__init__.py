"""Cohort-scale correction: a BIDS-App over many scans, resumable, on a local pool or a Dask cluster.

:mod:`.scans` finds the scans, :mod:`.derivatives` names and records the outputs, :mod:`.worker`
corrects one scan (in any process), :mod:`.engines` runs the scans, :mod:`.runner` ties them into the
BIDS-App's participant and group levels, :mod:`.command` is ``pet-pvc batch``. See docs/batch.md.
"""
