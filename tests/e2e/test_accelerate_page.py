"""The Accelerate page in a real browser, on the tiny model: an experiment queued from the form runs on a
real Celery worker process (Daphne serving the site, the embedded broker), the page follows it live and
draws its plot, and two finished experiments are overlaid. The browser fixture fails on any CSP error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_NAME, manage
from tests.e2e.conftest import ARTIFACTS
from tests.playground.jobs.sites import Stack, jobs_site

pytestmark = pytest.mark.integration
FINISHED = (
    "['succeeded', 'failed', 'cancelled'].includes(document.querySelector('#experiment-status')?.textContent)"
)
POINTS_IN_DATA = """() => JSON.parse(document.getElementById('experiment-charts').textContent)
  .reduce((n, chart) => n + chart.series.reduce((m, s) => m + s.points.length, 0), 0)"""


@pytest.fixture(scope="module")
def stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with jobs_site(tmp_path_factory.mktemp("accelerate-site"), tiny_model_dir) as s:
        yield s


def run_batching(page, stack: Stack, sizes: tuple[str, ...]) -> int:
    page.goto(f"{stack.url}/accelerate/")
    page.locator("#id_model").select_option(TINY_NAME)
    page.locator('input[name="experiment"][value="batching"]').check()
    assert page.locator("#params-batching").is_visible()
    assert page.locator("#params-prefix_cache").is_hidden(), "only the chosen experiment's parameters show"
    for box in page.locator('input[name="batching-batch_sizes"]').all():
        box.set_checked(box.get_attribute("value") in sizes)
    page.locator("#id_batching-new_tokens").fill("32")
    page.get_by_role("button", name="Run the experiment").click()
    page.wait_for_url(re.compile(r"/accelerate/\d+/$"))
    page.locator("#experiment-progress").wait_for()
    page.wait_for_function(FINISHED, timeout=180_000)
    status = page.locator("#experiment-status").text_content()
    assert status == "succeeded", page.locator("#experiment-live").inner_text()
    return int(page.url.rstrip("/").split("/")[-1])


def test_an_experiment_runs_on_the_worker_and_its_plot_is_drawn_then_compared(stack: Stack, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(manage(stack.env, "login_link", "--base-url", stack.url).strip())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{stack.url}/models/")
    page.get_by_role("link", name="Accelerate").click()
    page.wait_for_url(f"{stack.url}/accelerate/")

    first = run_batching(page, stack, ("1", "2", "4"))
    assert "4 streams at once" in page.locator("#experiment-summary").inner_text()
    charts = page.locator("svg.experiment-chart")
    assert charts.count() == 2, "throughput and latency"
    drawn = page.locator("svg.experiment-chart circle.point").count()
    assert drawn == page.evaluate(POINTS_IN_DATA) == 12, "every point of the data is on the plots"
    assert page.locator('svg[data-chart-id="throughput"] path').count() == 2, "one line per series"
    xs = page.locator('svg[data-chart-id="throughput"] g[data-series="aggregate"] circle').evaluate_all(
        "dots => dots.map((d) => Number(d.dataset.x))"
    )
    assert xs == [1, 2, 4]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "accelerate-batching.png"), full_page=True)

    second = run_batching(page, stack, ("1", "2"))
    page.locator("#compare-form select[name=b]").select_option(str(first))
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(r"/accelerate/compare/\?a=\d+&b=\d+$"))
    assert f"#{second} and #{first}" in page.locator("h1").inner_text()
    series = page.locator('svg[data-chart-id="throughput"] g.series').evaluate_all(
        "groups => groups.map((g) => g.dataset.series)"
    )
    assert {f"#{second} aggregate", f"#{first} aggregate"} <= set(series)
    assert page.locator('svg[data-chart-id="throughput"] path[stroke-dasharray]').count() == 2, "B is dashed"
    page.screenshot(path=str(ARTIFACTS / "accelerate-compare.png"), full_page=True)
    page.goto(f"{stack.url}/accelerate/")
    assert page.locator("#experiment-rows tr[data-status=succeeded]").count() == 2
    page.screenshot(path=str(ARTIFACTS / "accelerate-page.png"), full_page=True)
