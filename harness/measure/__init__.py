"""Measurement, written once: every figure in ``result.json`` that is measured comes from here.

One file per measure, behind the window interface of :mod:`harness.measure.meter`:

- ``timer``: device-synchronised clock reads;
- ``nvml``: GPU energy (NVML counter, power sampling, or none);
- ``energy``: CPU/RAM energy and CO2 from codecarbon, plus the GPU meter;
- ``host``: host conditions (threads, affinity, load, other processes' CPU share);
- ``flops``: fvcore forward counts and ``FlopCounterMode`` training steps;
- ``peaks``: datasheet, derived (CPU) and measured peaks, hardware burden, MFU.
"""
