"""write_report end to end: the four files, their contents, escaping, and a render in headless Chromium.

Run with `pytest tests/report`; the Chromium test skips (with a reason) only when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from peftlab.report import write_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def test_writes_four_files_and_returns_paths(written):
    out, result = written["out"], written["result"]
    for name in ("report.html", "report.md", "summary.csv", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert result["report"] == str(out / "report.html")
    assert result["markdown"] == str(out / "report.md")
    assert len(result["summary"]) == 6
    assert sorted(p.name for p in (out / "plots").iterdir())[0].endswith(".png")


def test_summary_csv_and_json(written, records):
    out = written["out"]
    with (out / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    cols = rows[0].keys()
    for c in ("dataset", "model", "method", "n_seeds", "accuracy_mean", "accuracy_ci95", "macro_f1_mean"):
        assert c in cols
    for c in (
        "train_s_mean",
        "train_samples_per_s_ci95",
        "peak_rss_mb_std",
        "trainable_params",
        "baseline_accuracy_mean",
    ):
        assert c in cols
    lora = next(r for r in rows if (r["dataset"], r["method"]) == ("sst2-mini", "lora"))
    assert float(lora["accuracy_mean"]) == pytest.approx(0.84) and lora["n_seeds"] == "3"
    assert lora["seeds"] == "0;1;2"

    text = (out / "summary.json").read_text()
    assert "NaN" not in text  # strict JSON
    summary = json.loads(text)
    assert len(summary["rows"]) == 6 and summary["runs"]["failed"] == 1
    assert summary["failed"][0]["error"] == records[-1]["error"]
    assert set(summary["comparison"]) == {"sst2-mini", "fashion-mini"}


def test_html_has_leaderboard_plots_failures_and_prose(written):
    html = written["html"]
    assert "<table class='leaderboard'>" in html and html.count("<table class='leaderboard'>") == 2
    assert "0.860 <span class=ci>± 0.025</span>" in html  # fashion-mini leader, mean ± CI
    imgs = re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(imgs) == 8  # 2 datasets × (params, time, memory, seed spread)
    assert all(base64.b64decode(b).startswith(b"\x89PNG\r\n\x1a\n") for b in imgs)
    # the failed run is listed with its error, escaped
    assert "RuntimeError: shape mismatch &lt;head&gt; &amp; &#x27;lora&#x27; (8 vs 16)" in html
    assert "<head> &" not in html
    assert "test &lt;report&gt;" in html and "<title>test &lt;report&gt;</title>" in html
    # the written comparison is there and made of numbers
    assert "full leads at 0.860 ± 0.025 accuracy (3 seeds)." in html
    prose = re.findall(r"<ol class=prose>(.*?)</ol>", html, re.S)
    assert len(prose) == 2
    for block in prose:
        for li in re.findall(r"<li>(.*?)</li>", block):
            assert re.search(r"\d", li), li
    # the deliberate parameter mismatch is loud
    assert "class='num bad'>12,546 ✗" in html and "MISMATCH" in html
    assert "trainable: predicted 12,548 ≠ measured 12,546 (+2)" in html
    # sizes, environment footer, self-containment
    assert "train 2,000 / eval 500 examples" in html and "first 2000 of the train split" in html
    assert "19 runs: 18 ok, 1 failed, 0 cancelled" in html and "02bf9ef" in html and "torch" in html
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html


def test_markdown_report(written):
    md = written["md"]
    assert md.startswith("# test &lt;report&gt;")
    assert "| # | method | model | seeds | accuracy ± 95% CI |" in md
    assert "| 0.860 ± 0.025 |" in md
    assert "full leads at 0.860 ± 0.025 accuracy (3 seeds)." in md
    assert (
        "![fashion-mini: accuracy vs trainable parameters](plots/0-fashion-mini-trainable_params.png)" in md
    )
    assert (written["out"] / "plots/0-fashion-mini-trainable_params.png").is_file()
    assert "RuntimeError: shape mismatch &lt;head&gt; & 'lora' (8 vs 16)" in md
    assert "✗ **MISMATCH**" in md


def test_single_seed_and_empty_reports(tmp_path, records):
    one = [r for r in records if r.get("seed") == 0]
    result = write_report(one, tmp_path / "one")
    html = Path(result["report"]).read_text()
    assert "± n/a" in html and "(n=1, no CI)" in html and "configurations ran with a single seed" in html
    assert all(r["accuracy_ci95"] is None for r in result["summary"])

    result = write_report([records[-1]], tmp_path / "none")  # only the failed run
    html = Path(result["report"]).read_text()
    assert result["summary"] == [] and "No successful runs" in html and "shape mismatch" in html


def _chromium(args: list[str], tmp_path: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# injected into a copy of the report only (the report itself runs no script): records image sizes and errors
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || (e.target && e.target.tagName) || e.type)); }, true);
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) { return [i.complete, i.naturalWidth, i.naturalHeight]; });
  var pre = document.createElement('pre'); pre.id = 'peftlab-probe';
  pre.textContent = JSON.stringify({imgs: imgs, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(written, tmp_path):
    report = written["out"] / "report.html"
    url = report.resolve().as_uri()

    # 1. the report as written: no console message at all (a CSP violation, a failed load or a JS error would log one)
    run = _chromium(["--dump-dom", url], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '<table class="leaderboard">' in run.stdout  # the DOM was built from our file
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    # 2. a copy with a probe script (CSP lifted so it may run): every <img> decoded with a real size, no error events
    html = report.read_text(encoding="utf-8")
    html = re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", html)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    run = _chromium(["--dump-dom", probe.resolve().as_uri()], tmp_path)
    found = re.search(r'<pre id="peftlab-probe">(.*?)</pre>', run.stdout, re.S)
    assert found, run.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert len(result["imgs"]) == 8
    for complete, width, height in result["imgs"]:
        assert complete and width > 300 and height > 200

    # 3. a screenshot of the report is not blank: many distinct colours, plenty of non-white pixels
    shot = tmp_path / "shot.png"
    run = _chromium(["--window-size=1300,2400", f"--screenshot={shot}", url], tmp_path)
    assert shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1300, 2400)
    small = image.resize((260, 480))
    pixels = list(small.getdata())
    non_white = sum(1 for p in pixels if min(p) < 235)
    assert non_white > 0.05 * len(pixels)
    assert len(set(pixels)) > 200


def test_sparse_records_do_not_break_the_report(tmp_path):
    # ok runs missing most sections, a NaN accuracy, a cancelled run with nothing but its status
    records = [
        {
            "run_id": "a",
            "status": "ok",
            "dataset": "d",
            "model": "m",
            "method": "lora",
            "seed": 0,
            "metrics": {"accuracy": 0.5},
        },
        {
            "run_id": "b",
            "status": "ok",
            "dataset": "d",
            "model": "m",
            "method": "head",
            "seed": 0,
            "metrics": None,
        },
        {"run_id": "c", "status": "cancelled", "dataset": "d", "model": "m", "method": "full", "seed": 0},
        {
            "run_id": "e",
            "status": "ok",
            "dataset": "d",
            "model": "m",
            "method": "full",
            "seed": 0,
            "metrics": {"accuracy": 0.6},
        },
        {
            "run_id": "f",
            "status": "ok",
            "dataset": "d",
            "model": "m",
            "method": "full",
            "seed": 1,
            "metrics": {"accuracy": float("nan")},
        },
    ]
    result = write_report(records, tmp_path)
    full = next(r for r in result["summary"] if r["method"] == "full")
    assert (full["n_seeds"], full["n_runs"], full["accuracy_ci95"]) == (1, 2, None)  # NaN is not a seed
    html = Path(result["report"]).read_text()
    assert "(no error recorded)" in html and "cancelled" in html
    json.loads((tmp_path / "summary.json").read_text())
