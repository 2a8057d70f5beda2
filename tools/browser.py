"""Headless Chromium for the console's browser tests and its screenshot.

Chromium and chromedriver are Debian's (``chromium``, ``chromium-driver``). ``make tools``
unpacks them with the libraries this machine lacks into ``.tools/`` without root
(tools/unpack_debs.sh); a machine that has them installed uses its own. Unpacked, they
find those libraries through LD_LIBRARY_PATH, set for chromedriver and the browser it
starts only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tools import REPO

TOOLS = REPO / ".tools"
LOCAL_CHROMIUM = TOOLS / "usr" / "lib" / "chromium" / "chromium"
LOCAL_DRIVER = TOOLS / "usr" / "bin" / "chromedriver"


def executables() -> tuple[Path, Path]:
    """(chromium, chromedriver): unpacked in .tools/, else on PATH."""
    if LOCAL_CHROMIUM.exists() and LOCAL_DRIVER.exists():
        return LOCAL_CHROMIUM, LOCAL_DRIVER
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return Path(browser), Path(driver)
    raise FileNotFoundError(
        f"no chromium and chromedriver in {TOOLS} or on PATH: `make tools` unpacks Debian's "
        "(`make test` does it first)"
    )


def library_path() -> str:
    """Every directory under .tools/ that holds a shared library, then the caller's."""
    dirs = sorted({str(p.parent) for p in TOOLS.rglob("*.so*") if p.is_file()})
    inherited = os.environ.get("LD_LIBRARY_PATH")
    return ":".join([*dirs, inherited] if inherited else dirs)


def chrome(width: int = 1440, height: int = 1000) -> webdriver.Chrome:
    browser, driver = executables()
    options = Options()
    options.binary_location = str(browser)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI and containers; the sandbox needs user namespaces
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    env = {**os.environ, "LD_LIBRARY_PATH": library_path(), "SE_OFFLINE": "true"}
    return webdriver.Chrome(options=options, service=Service(str(driver), env=env))
