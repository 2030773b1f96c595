"""Headless Chromium screenshots for the HTML pages' tests (report, viewer): one way to run it.

Skipped where Chromium is not installed, a failure under CI (`.ci/run` installs the Debian
package). The flags are the ones that work on a sandboxed machine without network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, tmp_path: Path, *, width: int, height: int) -> np.ndarray:
    """int16 RGB pixels `[height, width, 3]` of `page` rendered by headless Chromium."""
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required under CI (.ci/run installs the Debian package)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / f"{page.stem}.png"
    subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}",
            f"--window-size={width},{height}", page.as_uri(),
        ],
        check=True, capture_output=True, timeout=90,
    )
    return np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
