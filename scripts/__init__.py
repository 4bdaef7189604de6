"""Tools around fastnst, grouped by purpose; run them from the repository root as modules:
``python -m scripts.bench.speed``, ``python -m scripts.quality.judge``, ... (see docs/layout.md)."""
