"""The HTML page (benchmark/reporting/html.py): self-contained, built from records alone, and in a
real browser (headless chromium) its leaderboard has the rows and columns and sorts on a header
click; a screenshot is saved."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.core.storage import StorageLedger
from benchmark.reporting.html import pareto_front, render_page, stage_record, write_html
from benchmark.reporting.records import RunRecord, write_record

STREAM = {"name": "tiny", "domains": ["polyp", "shadow", "lesion", "natural"], "trained": 3,
          "eval_only": ["natural"]}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _record(method, seed, base, mb, extra=None):
    ledger = StorageLedger()
    for d in STREAM["domains"][:3]:
        ledger.record(d, {"adapter": int(mb * 2 ** 20 * 0.75), "head": int(mb * 2 ** 20 * 0.25)})
    iou = np.clip(base + np.random.default_rng(seed).normal(0, 0.05, (4, 4)), 0, 1)
    return RunRecord.create(method=method, backbone="sam_small", stream=STREAM, seed=seed,
                            matrices={"iou": iou, "dice": iou, "mae": 1 - iou},
                            hparams={"lr": 0.005, "epochs": 2}, storage=ledger.to_dict(),
                            timing={"train": [1.0, 2.0, 3.0], "train_total": 6.0, "total": 9.5},
                            extra=extra or {})


@pytest.fixture
def records():
    prov = {"command": ["run_benchmark.py", "run", "--stream", "tiny"],
            "data_manifests": {"polyp": "feedc0ffee"}}
    # AA: samcl ~70, lora ~55, zero_shot ~40; storage MB: 1.2, 0.4, 0
    return [_record("samcl", 1, 0.7, 1.2, prov), _record("samcl", 2, 0.7, 1.2, prov),
            _record("lora", 1, 0.55, 0.4), _record("zero_shot", 1, 0.4, 0.0),
            _record("not_a_method_here", 1, 0.3, 2.0)]


def test_page_is_self_contained_and_complete(records):
    page = render_page(records)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from the network
    assert page.count('src="data:image/png;base64,') == 3 + 4  # 3 plots + one heatmap per method
    for text in ("AA mIoU ↑", "Storage MB ↓", "Right after training", "Zero-shot (R[0, d])",
                 "run_benchmark.py run --stream tiny", "feedc0ffee", "diff-a"):
        assert text in page, text
    # the method card shows the registry's docstring; an unknown method gets a note, no error
    assert "SAMCL: one AugModule per domain" in page
    assert "not registered in this installation" in page


def test_stage_views_and_pareto_front(records):
    r = records[0]
    R = r.matrix("iou")
    assert stage_record(r, "zero").matrix("iou")[-1].tolist() == R[0].tolist()
    after = stage_record(r, "after").matrix("iou")[-1]
    assert after[:3].tolist() == [R[1, 0], R[2, 1], R[3, 2]] and np.isnan(after[3])
    # (storage, score): the second point is beaten by the first (less storage, higher score)
    assert pareto_front([(1.0, 60), (2.0, 50), (0.0, 40), (3.0, 70)]) == [2, 0, 3]


def test_report_html_option_writes_the_page(records, tmp_path, capsys):
    for r in records[:2]:
        write_record(r, tmp_path / "results")
    assert main(["report", "--results", str(tmp_path / "results"), "--html"]) == 0
    assert (tmp_path / "results" / "tables" / "report.html").is_file()
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "t"),
                 "--html", str(tmp_path / "page.html")]) == 0
    assert "page: " in capsys.readouterr().out and (tmp_path / "page.html").is_file()


def _browser():
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        pytest.skip("no chromium on this machine (.ci/run installs it with apt-get where it can)")
    return found


def _chromium(browser, *args, timeout=120):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _leaderboard(dom):
    """(column keys, method of each row) of the leaderboard in a dumped DOM."""
    table = dom[dom.index('<table id="leaderboard"'):]
    table = table[:table.index("</table>")]
    return re.findall(r'<th data-key="([^"]+)"', table), re.findall(r'<tr data-method="([^"]+)"', table)


def test_in_a_browser_rows_columns_sorting_and_screenshot(records, tmp_path):
    browser = _browser()
    page = write_html(records, tmp_path / "report.html")
    url = page.resolve().as_uri()
    assert _leaderboard(page.read_text())[1] == ["samcl", "lora", "zero_shot", "not_a_method_here"]
    # ``#sort=<key>``: once loaded, the page clicks that column's header (a test hook)
    dom = _chromium(browser, "--dump-dom", url + "#sort=storage_mb").stdout
    keys, methods = _leaderboard(dom)
    assert keys[:3] == ["method", "backbone", "AA_iou"] and "storage_mb" in keys and keys[-2:] == ["seeds", "orders"]
    assert 'data-sorted-by="storage_mb"' in dom and 'data-sorted="asc"' in dom  # lower is better
    assert methods == ["zero_shot", "lora", "samcl", "not_a_method_here"]  # by storage MB
    assert dom.count('<td class="') >= 3  # the diff view's deltas, computed by the page's script
    shot = tmp_path / "report.png"
    _chromium(browser, f"--screenshot={shot}", "--window-size=1300,1600", url)
    assert shot.is_file() and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
