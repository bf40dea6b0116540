"""`josh view` reports rendered by a real browser (headless Chromium): every node of a tree is drawn, the failed
conversation is listed first, and the screen is not blank. Skipped where no `chromium` is installed."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from josh.view import write_report
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records
from tests.test_view import beam_tree, run_file

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.data,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install chromium)"),
]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom(tmp_path: Path, page: Path, fragment: str = "") -> str:
    return chromium(tmp_path, "--dump-dom", page.as_uri() + (f"#{fragment}" if fragment else ""))


def interact(tmp_path: Path, page: Path, script: str) -> str:
    """The DOM after `script` ran on a copy of the page (its CSP, which allows only the page's own script,
    taken out of the copy)."""
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text(encoding="utf-8"))
    copy = page.with_name("interact.html")
    copy.write_text(html.replace("</body>", f"<script>{script}</script></body>"), encoding="utf-8")
    return dom(tmp_path, copy)


def pixels(png: Path) -> Counter[bytes]:
    """The colours of an 8-bit RGB or RGBA PNG, counted (a small decoder: zlib and the five row filters)."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat = 8, b""
    width = height = channels = 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    counts: Counter[bytes] = Counter()
    for y in range(height):
        row_start = y * (stride + 1)
        kind, row = raw[row_start], bytearray(raw[row_start + 1 : row_start + 1 + stride])
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        counts.update(bytes(row[i : i + 3]) for i in range(0, stride, channels * 4))  # every 4th pixel
        previous = row
    return counts


def assert_drawn(png: Path) -> None:
    counts = pixels(png)
    background, most = counts.most_common(1)[0]
    assert len(counts) > 50, f"only {len(counts)} colours: a blank page?"
    assert most / sum(counts.values()) < 0.9, "nine tenths of the screen is one colour"


def test_trees_and_an_eval_run_render_in_chromium(tmp_path: Path) -> None:
    trees, run = tmp_path / "trees.jsonl", tmp_path / "run.jsonl"
    harvested = run_josh("harvest", "toolwoz", "--limit", "3", "--out", str(trees))
    assert harvested.returncode == 0, harvested.stderr
    evaluated = run_josh("eval", "toolwoz", "--limit", "4", "--mock-mistake-rate", "0.5", "--out", str(run))
    assert evaluated.returncode == 0, evaluated.stderr
    # 8 leaves and chains of 12 after a reward at step 5; and the same beam never rewarded (111 nodes, none golden)
    big = run_file(
        tmp_path / "big.jsonl", "harvest toolwoz", [beam_tree(), beam_tree("MUL0200", reward_step=99)]
    )
    for source in (trees, run, big):
        write_report(source, source.with_suffix(".html"))  # the command itself is tested in test_view.py

    for page, tree in [(trees, t) for t in records(trees)] + [(big, t) for t in records(big)]:
        shown = dom(tmp_path, page.with_suffix(".html"), tree["task_id"])
        assert f'data-task="{tree["task_id"]}"' in shown
        assert len(re.findall(r'<div class="card [^"]*" data-node="\d+"', shown)) == len(tree["nodes"])
        golden = [n["id"] for n in tree["nodes"] if n["golden"]]
        assert len(re.findall(r'class="card golden[^"]*" data-node=', shown)) == len(golden)
        # the script opens the conversation up to the last golden node (the first root when none is golden)
        start = golden[-1] if golden else tree["nodes"][0]["id"]
        assert f"conversation up to node #{start} (" in shown
        if tree["task_id"] == "MUL0100":
            assert len(re.findall(r'class="card pruned[^"]*" data-node=', shown)) == 25  # worked out by hand
    assert len(records(big)[1]["nodes"]) == 111

    # Typing a task id filters the list; clicking a node shows the conversation from the first root down to it.
    second = records(trees)[1]
    last = second["nodes"][-1]
    parents = {n["id"]: n["parent"] for n in second["nodes"]}
    depth, at = 0, last["id"]
    while parents[at] is not None:
        depth, at = depth + 1, parents[at]
    shown = interact(
        tmp_path,
        trees.with_suffix(".html"),
        f"var s = document.getElementById('search'); s.value = {second['task_id'].lower()!r};"
        "s.dispatchEvent(new Event('input'));"
        "document.querySelector('#list li:not([hidden])').click();"
        f"document.querySelector('.card[data-node=\"{last['id']}\"]').click();",
    )
    assert re.search(r'id="shown"[^>]*>1 of 3 match<', shown)
    assert len(re.findall(r'<li class="item [^"]*"[^>]*hidden', shown)) == 2
    assert f'data-kind="tree" data-task="{second["task_id"]}"' in shown
    assert f"conversation up to node #{last['id']} ({depth + 1} nodes)" in shown
    assert len(re.findall(r'<div class="step ', shown)) == depth + 1

    conversations = records(run)
    worst = min(conversations, key=lambda r: (r["reward"], r["task_id"]))
    assert worst["reward"] < 1.0, [r["reward"] for r in conversations]  # the mock erred somewhere
    shown = dom(tmp_path, run.with_suffix(".html"))
    listed = re.findall(r'<li class="item [^"]*"[^>]*data-task="([^"]+)"', shown)
    assert len(listed) == len(conversations) and listed[0] == worst["task_id"]
    assert f'data-kind="run" data-task="{worst["task_id"]}"' in shown  # the first one is on screen

    for page in (trees.with_suffix(".html"), run.with_suffix(".html")):
        png = page.with_suffix(".png")
        chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,900", page.as_uri())
        assert_drawn(png)
