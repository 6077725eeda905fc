"""Where the project's data files live: experiments, search spaces, results."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
SPACES_DIR = PROJECT_ROOT / "search_spaces"
RESULTS_DIR = EXPERIMENTS_DIR / "results"
