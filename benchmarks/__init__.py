"""Benchmarks for r9s_async against its peers; run ``python -m benchmarks`` (or ``nox -s bench``).

Each benchmark serves the API double from a separate process, measures this client and its
peers side by side in the same run, repeats, and reports ratios to a baseline from that run.
"""
