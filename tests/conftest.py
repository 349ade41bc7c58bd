"""Shared fixtures: small micro worlds made once per test session."""

from __future__ import annotations

import pytest

from s2dit.config import VideoSpec
from s2dit.data.micro.writer import MicroWorldConfig, write_micro_world


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory):
    """24 default-size clips (256x144, 33 frames, 16 fps) with seed 3."""
    out = tmp_path_factory.mktemp("micro_world")
    write_micro_world(out, 24, MicroWorldConfig(seed=3), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_spec():
    return VideoSpec(width=64, height=48, frames=9, fps=8.0)


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
