"""The report as a browser sees it: headless Chromium parses and paints it, and the numbers in the
rendered DOM are the evaluation's.

Two reports are rendered, each in one Chromium run that both dumps the DOM and takes a
screenshot: the bundled samples, and a generated 1,500-device lab fleet with hostile device
names, planned actions, blocklists and ingestion counts (about 1.5 seconds per run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from pipeline.matrix import load_matrix
from pipeline.report import SILENT_CAPABILITIES, render_report
from tests.support.devices import full_tenant
from tests.support.report import (
    HOSTILE_NAMES,
    Page,
    Rendered,
    chromium_installed,
    hostile_devices,
    lab_evaluation,
    parse_page,
    render_in_chromium,
    sample_evaluation,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not chromium_installed(), reason="chromium is not installed"),
]

WIDTH, HEIGHT = 1280, 2400
TOP = 50  # rows in the lab report's device list
PASSIVE_ORANGE = (0xEF, 0x6C, 0x00)  # the passive segment of the modes chart
NOT_ENFORCED_RED = (0xC6, 0x28, 0x28)  # heatmap cells where a protection does not enforce


@dataclass(frozen=True)
class Case:
    evaluation: Any
    rendered: Rendered
    page: Page


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    directory = tmp_path_factory.mktemp("report-chromium")
    matrix = load_matrix().to_json()
    sample = sample_evaluation()
    lab = lab_evaluation(1500, full_tenant(), extra=hostile_devices())

    pages = {
        "sample": (sample, render_report(sample, matrix)),
        "lab": (
            lab,
            render_report(
                lab,
                matrix,
                actions=[
                    {
                        "device_id": d["device_id"],
                        "device_name": d["device_name"],
                        "action": "enable_edr_block_mode",
                        "status": "planned",
                    }
                    for d in lab["devices"][:30]
                ],
                blocklists=[
                    {
                        "format": "squid-domains",
                        "list": "block",
                        "entries": 42,
                        "sha256": "0f" * 32,
                        "added": 42,
                        "removed": 0,
                    }
                ],
                ingestion={
                    "table": "MdeAvCoverage_CL",
                    "sent": len(lab["devices"]),
                    "failed": 0,
                    "dead_lettered": 0,
                },
                cycle={"cycle_id": "lab-0001", "tenant": "Contoso lab", "dry_run": True},
                top=TOP,
            ),
        ),
    }

    rendered = {}
    for name, (_, html) in pages.items():
        workdir = directory / name
        workdir.mkdir()
        path = workdir / f"{name}.html"
        path.write_text(html, "utf-8")
        rendered[name] = render_in_chromium(path, workdir, width=WIDTH, height=HEIGHT)
    return {
        name: Case(pages[name][0], rendered[name], parse_page(rendered[name].dom)) for name in pages
    }


@pytest.mark.parametrize("name", ["sample", "lab"])
def test_rendered_numbers_are_the_evaluation_summary(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    summary, metrics = case.evaluation["summary"], case.page.metrics()

    assert int(metrics["devices"]) == summary["devices"]
    assert int(metrics["devices-with-gaps"]) == summary["devices_with_gaps"]
    assert int(metrics["rejected"]) == summary["rejected"]
    share = round(100 * summary["devices_with_gaps"] / summary["devices"], 1)
    assert case.page.metric_text("gap-share") == f"{share:.1f}%"
    assert "inconsistencies" not in metrics

    table = case.page.root.by_id("modes-table")
    totals = {
        n.attrs["data-mode-total"]: int(n.text().replace(",", ""))
        for n in table.by_attr("data-mode-total")
    }
    assert totals == summary["by_mode"]
    gaps = {
        n.attrs["data-capability"]: int(n.attrs["data-gap-count"])
        for n in case.page.root.by_id("gaps-table").by_attr("data-gap-count")
    }
    assert gaps == summary["gaps_by_capability"]
    findings = {
        n.attrs["data-finding"]: int(n.text().replace(",", ""))
        for n in case.page.root.by_attr("data-finding")
    }
    assert findings == summary["findings_by_code"]


def test_the_browser_lists_the_devices_with_most_indicator_gaps_first(
    cases: dict[str, Case],
) -> None:
    case = cases["lab"]
    silent = [
        (
            -len(set(SILENT_CAPABILITIES) & set(d["gaps"])),
            d["device_name"].casefold(),
            d["device_id"],
        )
        for d in case.evaluation["devices"]
        if set(SILENT_CAPABILITIES) & set(d["gaps"])
    ]
    expected = [device_id for *_, device_id in sorted(silent)[:TOP]]

    rows = case.page.root.by_id("silent-devices").by_attr("data-device-id")
    assert [r.attrs["data-device-id"] for r in rows] == expected
    assert int(case.page.metrics()["silent-gap-devices"]) == len(silent) > TOP
    assert case.page.metrics()["dry-run"] == "true"


def test_hostile_names_are_text_in_the_browser(cases: dict[str, Case]) -> None:
    root = cases["lab"].page.root
    assert root.find_all(lambda n: n.tag in ("script", "img", "iframe")) == []
    assert not [n for n in root.iter() for attr in n.attrs if attr.startswith("on")]
    headings = [n.text() for n in root.find_all(lambda n: n.tag == "h1")]
    assert headings == ["Defender for Endpoint coverage report: Contoso lab"]

    names = {
        row.attrs["data-device-id"]: row.find_all(lambda n: n.attrs.get("class") == "device")[0]
        for row in root.by_id("silent-devices").by_attr("data-device-id")
    }
    assert names["hostile-0"].text() == HOSTILE_NAMES[0]
    assert names["hostile-1"].text() == HOSTILE_NAMES[1]
    assert names["hostile-4"].text() == "evil\\u202egnp.exe"


@pytest.mark.parametrize("name", ["sample", "lab"])
def test_the_report_paints_its_charts(cases: dict[str, Case], name: str) -> None:
    with Image.open(cases[name].rendered.screenshot) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
        colours = Counter({c: n for n, c in image.convert("RGB").getcolors(WIDTH * HEIGHT)})

    background, most = colours.most_common(1)[0]
    assert most < 0.8 * WIDTH * HEIGHT, f"mostly one colour {background}: nothing rendered?"
    assert len(colours) > 50  # text, cards and charts, not a blank or error page
    # The stacked bars and heatmap cells are solid shapes: thousands of pixels of their colours.
    assert colours[PASSIVE_ORANGE] > 2000
    assert colours[NOT_ENFORCED_RED] > 2000
