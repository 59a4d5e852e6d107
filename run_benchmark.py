#!/usr/bin/env python
"""Continual-learning benchmark of Segment Anything models.

    python run_benchmark.py                 # the built-in default benchmark + leaderboard
    python run_benchmark.py report          # tables and heatmaps from results/
    python run_benchmark.py --help          # everything else
"""
import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
