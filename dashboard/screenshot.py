"""Serve the dashboard on 127.0.0.1 and photograph pages with a headless Chromium (the README's screenshot).

    .state/venv/bin/python -m dashboard.screenshot --all docs/img      # after `make demo`: one picture per page

The same serve-and-browse code runs in the browser test (``tests/test_dashboard.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(database_url: str, port: int | None = None, timeout_s: float = 60) -> Iterator[str]:
    """A Streamlit server for the dashboard on 127.0.0.1; yields its base URL, stops it afterwards."""
    port = port or free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true"]
    cmd += ["--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"the dashboard did not come up on {base} within {timeout_s:.0f} s")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("chromium is not installed (make system-deps installs it as root)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


PAGES = {  # page -> text that is on it once it has drawn (the file name is the page's, lower-case)
    "Overview": "Negative share per",
    "Alerts": "Drill down into alert",
    "Headlines": "Search titles",
    "Companies": "Search by name or ticker",
    "Pipeline health": "Model in use",
}


def main(argv: list[str] | None = None) -> int:
    from pipeline import db

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img/overview.png")
    ap.add_argument("--page", default="Overview")
    ap.add_argument("--marker", default="Negative share per", help="text to wait for before the picture")
    ap.add_argument("--all", metavar="FOLDER", help="one picture per page into FOLDER (docs/img for the README)")
    args = ap.parse_args(argv)
    shots = (
        [(name, marker, Path(args.all) / f"{name.lower().replace(' ', '-')}.png") for name, marker in PAGES.items()]
        if args.all
        else [(args.page, args.marker, Path(args.out))]
    )
    with serve(db.database_url()) as base, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        for name, marker, out in shots:
            out.parent.mkdir(parents=True, exist_ok=True)
            page.goto(f"{base}/?page={name.replace(' ', '%20')}")
            page.get_by_text(marker).first.wait_for(timeout=60000)
            page.wait_for_timeout(2500)  # charts finish drawing
            page.screenshot(path=str(out), full_page=True)
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
