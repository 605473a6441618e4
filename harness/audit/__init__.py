"""Audit published compute claims: ``python -m harness.audit claims=FILE out_dir=DIR``.

Two checks, as Epoch AI does them by hand: count what the paper says it computed (parameters,
forward FLOPs, training FLOPs of the model built here), and check that the stated hardware could
have done it (chips x datasheet peak x hours). ``measure=true`` adds a measurement on this
device. Layout: ``claims`` (the CSV format), ``counting`` (build and count), ``hardware`` (chip
peaks), ``verdicts`` (thresholds), ``audit`` (one row), ``builtin`` (thompson, epoch),
``measured``, ``report``, ``pipeline``.
"""
