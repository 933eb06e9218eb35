"""Config names resolve to the packaged configs, in a source tree and in a built (installed) package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rc3d_af.config import config_path, load_config, packaged_config_dir
from rc3d_af.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def test_names_resolve_to_the_configs_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # any folder
    assert packaged_config_dir() == ROOT / "configs"  # a source tree (editable install) reads it in place
    assert config_path("a2net_synthetic") == ROOT / "configs" / "a2net_synthetic.yaml"
    assert config_path("a2net_synthetic.yaml") == ROOT / "configs" / "a2net_synthetic.yaml"
    assert load_config("a2net_thumos14_i3d").data.stride_frames == 4
    mine = tmp_path / "a2net_synthetic.yaml"
    mine.write_text("data: {annotations: a.json, features: f}\n")
    assert config_path("a2net_synthetic.yaml") == Path("a2net_synthetic.yaml")  # a file here wins
    with pytest.raises(InputError, match=r"no_such: no such config file, nor a packaged config name "
                       r"\(packaged: a2net_anet13_i3d, a2net_synthetic, a2net_thumos14_i3d"):  # fmt: skip
        config_path("no_such")
    with pytest.raises(InputError, match="no such config file"):
        config_path("elsewhere/a2net_synthetic.yaml")  # a path is never taken for a name


def test_a_built_package_carries_every_config(tmp_path: Path) -> None:
    """setup.py's build_py copies configs/*.yaml into the package; names resolve to that copy."""
    build = tmp_path / "build"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    copied = build / "rc3d_af" / "resources" / "configs"
    assert sorted(p.name for p in copied.glob("*.yaml")) == CONFIGS
    for name in CONFIGS:
        assert (copied / name).read_bytes() == (ROOT / "configs" / name).read_bytes()
    script = "from rc3d_af.config import config_path; print(config_path('a2net_synthetic'))"
    env = {**os.environ, "PYTHONPATH": str(build)}
    found = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert Path(found.stdout.strip()) == copied / "a2net_synthetic.yaml"
