"""Shared test fixtures: paths to ../shared fixtures (tests may read them; the project never does)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def samples_root() -> Path:
    root = FIXTURES / "samcl_samples"
    if not root.is_dir():
        pytest.skip(f"shared fixtures not found at {root}")
    return root


@pytest.fixture(scope="session")
def official_root() -> Path:
    root = FIXTURES / "samcl_official"
    if not root.is_dir():
        pytest.skip(f"shared fixtures not found at {root}")
    return root


@pytest.fixture(scope="session")
def golden_root() -> Path:
    root = FIXTURES / "samcl_golden"
    if not root.is_dir():
        pytest.skip(f"shared fixtures not found at {root}")
    return root
