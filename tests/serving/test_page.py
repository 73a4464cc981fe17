"""The page at / in a real browser: headless Chromium shows a user's recommendations by title
and an item page with similar items (skipped where Debian's chromium is not installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=8000", "--window-size=1280,900"]


def chromium(url: str, profile: Path, *args: str) -> str:
    run = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, url],
                         capture_output=True, text=True, timeout=120)
    return run.stdout


@pytest.fixture
def browser_profile(tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is absent: apt-get install chromium (the page test needs it)")
    return tmp_path / "profile"


def test_the_page_shows_recommendations_with_titles(server, browser_profile, tmp_path):
    dom = chromium(f"{server.url}/#user=u3", browser_profile, "--dump-dom")
    assert "User u3" in dom and "Top 10 recommendations" in dom
    assert dom.count("of cluster") >= 10  # titles of the recommended and history items
    assert "model vbpr" in dom and "cold start content" in dom
    shot = tmp_path / "page.png"
    chromium(f"{server.url}/#user=u3", tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_item_page_lists_similar_items(server, browser_profile):
    dom = chromium(f"{server.url}/#item=i4", browser_profile, "--dump-dom")
    assert "Film 4 of cluster 0" in dom and "10 most similar items" in dom
