"""The HTML report as a reader sees it, in a real headless Chromium (Debian's package,
installed by install.sh): the verdicts and pivot tables within the first screen at 1280 x 800,
every image decoded, no horizontal scrolling, also with every details section opened."""

import json
import re
import shutil
import subprocess

import pytest

from analysis import report
from bench.core.record import RunRecord, write_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (install.sh installs Debian's chromium)")

PROBE = """<script>
window.addEventListener('load', () => {
  const bottom = el => el ? el.getBoundingClientRect().bottom + window.scrollY : null;
  const facts = {width: innerWidth, height: innerHeight,
                 pivots: [...document.querySelectorAll('table.pivot')].map(bottom),
                 verdicts: [...document.querySelectorAll('.answer ul')].map(bottom),
                 scroll_closed: document.documentElement.scrollWidth};
  document.querySelectorAll('details').forEach(d => d.open = true);
  const images = [...document.images];
  facts.images = images.length;
  facts.broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  facts.scroll_open = document.documentElement.scrollWidth;
  const probe = document.createElement('pre'); probe.id = 'probe';
  probe.textContent = JSON.stringify(facts); document.body.appendChild(probe);
});
</script>"""

STRATEGIES = {"default": 1.00, "mirrored": 0.97, "mwms": 0.86, "horovod": 0.91}
WORKLOADS = {"charrnn-gru": 270.0, "charrnn-lstm": 110.0, "memnn": 8800.0, "mlp": 22000.0}


def study(root):
    """A demo-sized study: 4 workloads x 4 strategies x 1, 2, 4 replicas x 2 repeats, and one failure."""
    for workload, base in WORKLOADS.items():
        for strategy, factor in STRATEGIES.items():
            for count in (1, 2, 4):
                if strategy == "default" and count > 1:
                    continue
                for repeat in range(2):
                    throughput = base * count * factor ** count * (1 + 0.01 * repeat)
                    write_record(root, RunRecord(
                        run_id=f"{workload}-{strategy}-{count}-{repeat}", workload=workload, strategy=strategy,
                        status="ok", num_replicas=count, global_batch_size=64 * count, per_replica_batch_size=64,
                        config={"per_replica_batch_size": 64}, throughput={"samples_per_s": throughput},
                        timing={"step_time": {"median_s": 64 * count / throughput}}, extra={"parameters": 400_000}))
    write_record(root, RunRecord(run_id="broken", workload="mlp", strategy="mwms", status="failed", num_replicas=4,
                                 error="lost rank 1 on emunode2 " + "x" * 300))


def seen(page, tmp_path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,800", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"Chromium printed no probe: {done.stderr[-1500:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


def test_first_screen_answers_and_the_page_fits_a_laptop(tmp_path):
    results = tmp_path / "results"
    study(results)
    built = report.build([str(results)], tmp_path / "report")
    facts = seen(built.html, tmp_path)
    assert facts["width"] == 1280, facts
    assert len(facts["pivots"]) == len(facts["verdicts"]) == 4
    assert facts["verdicts"][0] <= facts["height"] and facts["pivots"][0] <= facts["height"], facts
    assert sum(bottom <= facts["height"] for bottom in facts["pivots"]) >= 2, facts    # two workloads a row
    assert facts["scroll_closed"] <= facts["width"] and facts["scroll_open"] <= facts["width"], facts
    assert facts["images"] == 8 and facts["broken"] == [], facts        # throughput and efficiency x 4
    first_screen = built.summary
    assert "At 4 replicas (CPU): mirrored fastest" in first_screen and "replicas (CPU)" in first_screen
