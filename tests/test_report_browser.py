"""The replay report in a real browser: headless Chromium (Debian's `chromium` package) loads
report.html from disk with no network, every image decodes (no broken-image icons), and the
screenshot shows the page drawn: text, heat colours, colour bars. Skips, saying why, where
Chromium is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import pytest
from conftest import run_cli
from test_cli import config_file

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")

# what lets headless Chromium start in a container as root with no network to talk to
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

# added to a copy of the page: what the browser itself says about each image once loaded
PROBE = """<script>addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.dataset.narrowest = Math.min(...imgs.map(i => i.naturalWidth));
});</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory, small_scan) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    r = run_cli("replay", small_scan, "--config", config_file(tmp), "--out", tmp / "rec", "--report", tmp / "report")
    assert r.returncode == 0, r.stderr
    return tmp / "report" / "report.html"


def test_every_image_of_the_report_decodes_in_chromium(tmp_path, report):
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    r = chromium(tmp_path, "--dump-dom", probe.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    body = r.stdout[r.stdout.index("<body"):].split(">", 1)[0]
    attrs = {k: int(v.strip('"')) for k, v in (part.split("=", 1) for part in body.split()[1:])}
    n = report.read_text().count("<img ")
    assert n >= 2 and attrs["data-images"] == n and attrs["data-broken"] == 0, attrs
    assert attrs["data-narrowest"] >= 440, attrs  # board pictures, not placeholders


def test_screenshot_shows_the_page_drawn(tmp_path, report):
    shot = tmp_path / "shot.png"
    r = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape == (2400, 1280, 3)
    not_white = (img < 245).any(axis=2)
    assert not_white.mean() > 0.05                      # far from a blank page
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    vivid = (hsv[..., 1] > 150) & (hsv[..., 2] > 100)   # heat colours, colour bars, histogram bars
    assert vivid.sum() > 20_000, vivid.sum()
    # the gallery: board pictures side by side, each a tall block of coloured rows
    rows_with_colour = vivid.any(axis=1)
    assert rows_with_colour[1000:].sum() > 400
