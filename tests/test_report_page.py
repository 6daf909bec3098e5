"""The report opens with the answer and fits the window: results/report/index.html of a real
run (two renderings and a transfer), laid out by headless Chromium at 1,400 pixels."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from workflow_runner import make_project, snakemake

from workflow_scripts.probes.plots import has_curve
from workflow_scripts.stages.report import top1_text

pytestmark = pytest.mark.workflow
WINDOW = (1400, 900)
# Run in the page once it has loaded: open every folded block, then measure every element
# and note the order of the top-level sections; the result is written into the DOM, which
# Chromium's --dump-dom prints.
MEASURE = """<script>
window.addEventListener('load', () => {
  const answer = document.getElementById('answer').getBoundingClientRect();
  const shown = [...document.images].filter(image => image.getBoundingClientRect().width > 0);
  const first = {answer: answer.top, answerBottom: answer.bottom,
                 image: shown.length ? shown[0].getBoundingClientRect().top : null};
  for (const block of document.querySelectorAll('details')) block.open = true;
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const element of document.body.querySelectorAll('*')) {
    const box = element.getBoundingClientRect();
    if (box.width > 0 && (box.left < -0.5 || box.right > width + 0.5)) {
      wide.push(`${element.tagName} ${Math.round(box.left)}-${Math.round(box.right)}: ${element.textContent.slice(0, 60)}`);
    }
  }
  const order = [...document.body.children].map(child => child.id || child.tagName.toLowerCase());
  const out = document.createElement('pre');
  out.id = 'measured';
  out.textContent = JSON.stringify({width, window: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, wide, order, first});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium not found: WITH_BROWSER=1 bash scripts/bootstrap.sh installs Debian's chromium")
    return found


def chromium_arguments(binary: str) -> list[str]:
    # --no-sandbox: Chromium refuses to run as root with its sandbox (CI containers run as root).
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"]


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    folder = make_project(
        tmp_path_factory.mktemp("report"),
        {
            "variants": {"piano": {}, "organ": {"programs": [19]}},
            "variant_transfers": [{"train": ["piano"], "test": "organ"}],
            "retrieval": {"metric_head": {"epochs": 20}},
        },
    )
    snakemake(folder, "--cores", "2")
    return folder


def measured_layout(page: Path, tmp_path: Path) -> dict:
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(page.read_text().replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    completed = subprocess.run(
        [*chromium_arguments(chromium()), "--virtual-time-budget=10000", "--dump-dom", measured_page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', completed.stdout, re.S)
    assert found, f"chromium printed no measurement:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_the_page_fits_a_1400_pixel_window_and_opens_with_the_answer(report_run, tmp_path):
    page = report_run / "results/report/index.html"
    layout = measured_layout(page, tmp_path)
    assert layout["window"] == WINDOW[0] and layout["width"] > WINDOW[0] - 30  # less the scroll bar
    assert layout["scrollWidth"] <= layout["width"] and not layout["wide"], layout["wide"]
    # The answer comes first (after the title), on the first screen and above every figure; then the contents.
    assert layout["order"][:3] == ["h1", "answer", "contents"], layout["order"]
    first = layout["first"]
    assert first["answer"] < WINDOW[1] / 4 and (first["image"] is None or first["image"] > first["answerBottom"])


def test_the_answer_holds_the_headline_figures(report_run):
    results = report_run / "results"
    report = (results / "report/index.html").read_text()
    answer = html.unescape(report.split("<section id='answer'>", 1)[1].split("</section>", 1)[0])
    summary = pd.read_csv(results / "summary.tsv", sep="\t")
    within = summary[summary.train_variants == summary.test_variant]
    for variant in ("piano", "organ"):
        rows = within[within.variant == variant].sort_values(["top1", "probe"], ascending=[False, True])
        best, recipe = rows.iloc[0], rows.set_index("probe").loc["linear_adam"]
        assert re.search(rf">{re.escape(best.probe)}</td><td>{re.escape(top1_text(best))}</td>", answer), best.probe
        assert top1_text(recipe) in answer
        retrieval = json.loads((results / f"retrieval/spectral/{variant}/by_piece/metrics.json").read_text())
        maps = {row["representation"]: row["map"] for row in retrieval["results"]}
        assert f"{maps['raw']:.3f} → {maps['metric_head']:.3f}" in answer
    transfer = summary[summary.variant == "piano_to_organ"].set_index("probe")
    assert "Across renderings" in answer
    assert any(top1_text(row) in answer for row in transfer.itertuples())
    # The contents list links every section after it.
    contents = report.split("<nav id='contents'>", 1)[1].split("</nav>", 1)[0]
    for anchor in ("corpus", "probes", "variants", "best", "retrieval", "geometry", "audit", "published"):
        assert f"href='#{anchor}'" in contents and f"<section id='{anchor}'>" in report, anchor


def test_only_iterative_probes_have_a_curve_in_the_report(report_run):
    probes = report_run / "results/probes/spectral/piano/by_snippet"
    assert not has_curve(pd.read_csv(probes / "linear_lbfgs_std/curve.tsv", sep="\t"))
    assert has_curve(pd.read_csv(probes / "linear_adam/curve.tsv", sep="\t"))
    report = (report_run / "results/report/index.html").read_text()
    best = report.split("<section id='best'>", 1)[1].split("</section>", 1)[0]
    heading = html.unescape(best.split("</h2>", 1)[0])
    shown_curve = 'alt="learning curve"' in best
    probe = heading.rsplit(" / ", 1)[1]
    variant = heading.split(" / ")[1]
    curve = pd.read_csv(report_run / f"results/probes/spectral/{variant}/by_snippet/{probe}/curve.tsv", sep="\t")
    assert shown_curve == has_curve(curve) and shown_curve == ("No training curve" not in best)


def test_a_run_with_one_probe_lists_its_list_valued_settings(tmp_path):
    """One probe shares nothing with another, so its l2_grid (a list) reaches the settings table."""
    from workflow_scripts.stages.report import probe_settings, table_html

    metrics = tmp_path / "metrics.json"
    probe = {"kind": "logistic", "l2_grid": [0.1, 0.001], "layer": "mean"}
    metrics.write_text(json.dumps({"probe": probe, "provenance": {"wildcards": {"probe": "linear_lbfgs_std"}}}))
    settings, shared = probe_settings([str(metrics)])
    assert shared == {}
    page = table_html(settings, "{:g}")
    assert "<td>0.1, 0.001</td>" in page and "<td>logistic</td>" in page
