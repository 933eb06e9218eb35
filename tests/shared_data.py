"""Where the read-only shared data lives: ``../shared/data`` beside the repository (CI has it too)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
THUMOS14 = SHARED_DATA / "thumos14"
