#!/usr/bin/env python
"""Continual-learning benchmark of Segment Anything models.

    python run_benchmark.py                 # the built-in default benchmark + leaderboard
    python run_benchmark.py report          # tables and heatmaps from results/
    python run_benchmark.py --help          # everything else
"""
import os
import sys

from benchmark.cli import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
