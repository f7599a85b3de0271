"""Headless Chromium from Debian's packages, driven by selenium through the system chromedriver."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,2000")


@contextmanager
def chromium() -> Iterator[Any]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("chromium and chromium-driver are not installed (scripts/install-test-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="guard-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for f in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(f)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        browser.set_page_load_timeout(60)
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


# what the page drew: per chart, its type, dataset count, points and whether the canvas has ink
CHARTS_JS = """
const out = {};
for (const [id, c] of Object.entries(window.guardCharts || {})) {
  const cv = c.canvas, ctx = cv.getContext('2d');
  const px = ctx.getImageData(0, 0, cv.width, cv.height).data;
  let ink = 0;
  for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) ink++;
  out[id] = {type: c.config.type, datasets: c.data.datasets.length,
             points: c.data.datasets.map(d => d.data.filter(v => v !== null && v !== 0).length),
             sums: c.data.datasets.map(d => d.data.reduce((a, v) => a + (v || 0), 0)),
             labels: c.data.labels.length, ink: ink,
             ymax: c.scales.y ? c.scales.y.max : null,
             plugins: (c.config.plugins || []).map(p => p.id)};
}
return out;
"""
