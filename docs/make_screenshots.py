"""Regenerates the report screenshots in docs/ (12, 100 and 400 tokens) in headless Chromium.

    python docs/make_screenshots.py

Uses the results that tests/test_report.py builds from the real all-MiniLM-L6-v2 attention, so the
pictures show what the browser test checks.
"""

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from cleann.render import explanation_html  # noqa: E402
from test_report import chromium, demo_result, run_chromium  # noqa: E402

SIZES = {12: (1100, 1550), 100: (1100, 1650), 400: (1100, 1700)}


def main() -> int:
    if chromium() is None:
        print("no Chromium binary on PATH (apt-get install chromium)", file=sys.stderr)
        return 1
    for n, (w, h) in SIZES.items():
        with tempfile.TemporaryDirectory() as tmp:
            page = os.path.join(tmp, "report.html")
            with open(page, "w", encoding="utf-8") as f:
                f.write(explanation_html(demo_result(n)))
            png = os.path.join(HERE, f"report-{n}-tokens.png")
            r = run_chromium([f"--window-size={w},{h}", "--hide-scrollbars", "--virtual-time-budget=3000",
                              f"--screenshot={png}", "file://" + page])
            if not os.path.isfile(png):
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            print(f"{png}: {os.path.getsize(png) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
