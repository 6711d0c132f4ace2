"""The parts of ``bench/run_all.py``, one concept each.

- ``server``: the ``tiled serve config`` subprocess the three sides read;
- ``catalog``: the synthetic runs and the MongoDB archive written before measuring;
- ``operations``: every operation as data (label, what it measures, one callable per side);
- ``measure``: time, requests and peak memory of one call, for every side and operation;
- ``report``: the tables and notes, printed and written into ``docs/performance.md``.
"""
