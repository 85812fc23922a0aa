"""The HTML report: its numbers are the evaluation's, its values stay text, it stands alone."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.matrix import load_matrix
from pipeline.report import SILENT_CAPABILITIES, ReportInputError, build_report, render_report
from tests.support.devices import full_tenant
from tests.support.report import (
    HOSTILE_NAMES,
    Node,
    Page,
    hostile_devices,
    lab_evaluation,
    parse_page,
    sample_evaluation,
)

MATRIX = load_matrix().to_json()

# How each hostile name must read on the page: unchanged, except that characters which would
# hide or disguise text are shown as escapes.
SHOWN = {
    "evil\u202egnp.exe": "evil\\u202egnp.exe",
    "nul\x00byte\x07bell": "nul\\x00byte\\x07bell",
    "lone\ud800surrogate": "lone\\ud800surrogate",
}


@pytest.fixture(scope="module")
def sample() -> Any:
    return sample_evaluation()


@pytest.fixture(scope="module")
def sample_page(sample: Any) -> Page:
    return parse_page(render_report(sample, MATRIX))


def _count(node: Node, attribute: str) -> int:
    return int(node.attrs[attribute])


# --- the numbers ---------------------------------------------------------------------------------


def test_headline_numbers_are_the_summary(sample: Any, sample_page: Page) -> None:
    summary = sample["summary"]
    metrics = sample_page.metrics()

    assert int(metrics["devices"]) == summary["devices"] == 9
    assert int(metrics["devices-with-gaps"]) == summary["devices_with_gaps"]
    assert int(metrics["rejected"]) == summary["rejected"] == len(sample["rejected"])
    share = round(100 * summary["devices_with_gaps"] / summary["devices"], 1)
    assert float(metrics["gap-share"]) == share
    assert sample_page.metric_text("gap-share") == f"{share:.1f}%"
    assert int(metrics["not-active-devices"]) == summary["devices"] - summary["by_mode"]["active"]
    assert metrics["matrix-version"] == summary["matrix_version"]
    assert "inconsistencies" not in metrics


def test_modes_by_platform_table_and_chart_count_every_device(
    sample: Any, sample_page: Page
) -> None:
    expected = Counter((d["mode"], d["platform"]) for d in sample["devices"])
    table = sample_page.root.by_id("modes-table")
    cells = {
        (c.attrs["data-mode"], c.attrs["data-platform"]): _count(c, "data-count")
        for c in table.by_attr("data-count")
    }
    assert {k: v for k, v in cells.items() if v} == dict(expected)

    totals = {n.attrs["data-mode-total"]: int(n.text()) for n in table.by_attr("data-mode-total")}
    assert totals == sample["summary"]["by_mode"]
    platforms = {
        n.attrs["data-platform-total"]: int(n.text()) for n in table.by_attr("data-platform-total")
    }
    assert platforms == sample["summary"]["by_platform"]

    bars = sample_page.root.by_id("modes-chart").find_all(lambda n: n.tag == "rect")
    assert {(b.attrs["data-mode"], b.attrs["data-platform"]): _count(b, "data-count") for b in bars}
    assert sum(_count(b, "data-count") for b in bars) == sample["summary"]["devices"]


def test_heatmap_splits_each_mode_by_verdict(sample: Any, sample_page: Page) -> None:
    expected: Counter[tuple[str, str, str]] = Counter()
    for device in sample["devices"]:
        for cap_id, verdict in device["capabilities"].items():
            status = verdict["status"]
            if status == "unknown" and verdict.get("not_enforced_in"):
                status = "unknown-failing"
            expected[(cap_id, device["mode"], status.replace("_", "-"))] += 1

    cells = sample_page.root.by_id("heatmap").find_all(lambda n: "cell" in n.attrs.get("class", ""))
    by_mode = sample["summary"]["by_mode"]
    assert len(cells) == len(MATRIX["capabilities"]) * len(by_mode)
    for cell in cells:
        cap_id, mode = cell.attrs["data-capability"], cell.attrs["data-mode"]
        counts = {
            name[5:]: int(value)
            for name, value in cell.attrs.items()
            if name.startswith("data-") and name not in ("data-capability", "data-mode")
        }
        assert sum(counts.values()) == by_mode[mode]
        for status, count in counts.items():
            assert count == expected[(cap_id, mode, status)], (cap_id, mode, status)

    # A documented fact the chart must carry: in EDR block mode (still passive underneath)
    # URL indicators certainly fail outside Edge, whatever Microsoft says about Edge itself.
    edr = next(
        c
        for c in cells
        if c.attrs["data-capability"] == "indicator_url" and c.attrs["data-mode"] == "edr_block"
    )
    assert _count(edr, "data-unknown-failing") == by_mode["edr_block"]


def test_gaps_findings_and_unknowns_match_the_summary(sample: Any, sample_page: Page) -> None:
    summary, root = sample["summary"], sample_page.root

    gaps = {
        n.attrs["data-capability"]: _count(n, "data-gap-count")
        for n in root.by_id("gaps-table").by_attr("data-gap-count")
    }
    assert gaps == summary["gaps_by_capability"]

    findings = {
        n.attrs["data-finding"]: _count(n, "data-count") for n in root.by_attr("data-finding")
    }
    assert findings == summary["findings_by_code"]

    unknown = {
        n.attrs["data-capability"]: _count(n, "data-unknown-count")
        for n in root.by_attr("data-unknown-count")
    }
    assert unknown == summary["unknown_by_capability"]
    assert int(sample_page.metrics()["unknown-verdicts"]) == sum(unknown.values())


def test_silent_gap_devices_are_exactly_those_with_indicator_or_app_block_gaps(
    sample: Any, sample_page: Page
) -> None:
    silent = {
        d["device_id"]: [c for c in SILENT_CAPABILITIES if c in d["gaps"]]
        for d in sample["devices"]
        if set(SILENT_CAPABILITIES) & set(d["gaps"])
    }
    assert int(sample_page.metrics()["silent-gap-devices"]) == len(silent) > 0

    rows = sample_page.root.by_id("silent-devices").by_attr("data-device-id")
    assert {r.attrs["data-device-id"] for r in rows} == set(silent)
    for row in rows:
        flagged = [c.attrs["data-capability"] for c in row.by_attr("data-gap", "true")]
        assert flagged == silent[row.attrs["data-device-id"]]

    per_capability = {
        n.attrs["data-capability"]: _count(n, "data-silent-count")
        for n in sample_page.root.by_attr("data-silent-count")
    }
    assert per_capability == {
        c: sample["summary"]["gaps_by_capability"].get(c, 0) for c in SILENT_CAPABILITIES
    }


def test_a_long_list_is_cut_to_the_worst_devices_and_says_so() -> None:
    evaluation = lab_evaluation(1000, full_tenant())
    page = parse_page(render_report(evaluation, MATRIX, top=7))
    silent = [d for d in evaluation["devices"] if set(SILENT_CAPABILITIES) & set(d["gaps"])]

    rows = page.root.by_id("silent-devices").by_attr("data-device-id")
    assert len(rows) == 7
    assert int(page.metrics()["silent-gap-devices"]) == len(silent) > 7
    assert int(page.metrics()["silent-gap-devices-shown"]) == 7
    worst = max(len(set(SILENT_CAPABILITIES) & set(d["gaps"])) for d in silent)
    assert all(_count(r, "data-gap-count") == worst for r in rows)
    names = [r.find_all(lambda n: n.attrs.get("class") == "device")[0].text() for r in rows]
    assert names == sorted(names, key=str.casefold)


def test_citations_list_every_page_the_matrix_cites(sample_page: Page) -> None:
    cited = set()
    for capability in MATRIX["capabilities"].values():
        for by_platform in capability["cells"].values():
            for cell in by_platform.values():
                cited.add(cell["source"])
                cited.update(cell.get("also", []))
    links = {a.attrs["href"] for a in sample_page.root.by_id("citations").by_attr("href")}
    assert cited <= links
    assert all(url.startswith("https://learn.microsoft.com/") for url in links)


# --- a page that stands alone and stays text ----------------------------------------------------


def test_the_page_is_self_contained_and_well_formed(sample_page: Page) -> None:
    root = sample_page.root
    assert sample_page.mismatches == []
    assert root.find_all(lambda n: n.tag in ("script", "iframe", "object", "embed", "img")) == []
    assert root.by_attr("src") == []
    assert root.find_all(lambda n: n.tag == "link") == []
    styles = " ".join(n.text() for n in root.find_all(lambda n: n.tag == "style"))
    assert "url(" not in styles
    assert "@import" not in styles

    csp = root.by_attr("http-equiv", "Content-Security-Policy")
    assert len(csp) == 1
    assert "default-src 'none'" in csp[0].attrs["content"]
    for anchor in root.by_attr("href"):
        href = anchor.attrs["href"]
        assert href.startswith("#") or href.startswith("https://learn.microsoft.com/"), href
        if href.startswith("#"):
            assert root.by_attr("id", href[1:]), f"dangling link {href}"


def test_hostile_values_stay_text_everywhere() -> None:
    evaluation = lab_evaluation(40, full_tenant(), extra=hostile_devices())
    # A verdict whose source is not a web address must not become a link.
    first = evaluation["devices"][0]["capabilities"]["indicator_url"]
    first["source"] = "javascript:alert(document.domain)"
    first["also"] = ['https://learn.microsoft.com/x" onmouseover="alert(1)']
    evaluation["rejected"].append(
        {
            "source": "<b>file</b>",
            "record_id": "<i>",
            "field": "'\"",
            "reason": "<script>x</script>",
        }
    )
    hostile = HOSTILE_NAMES[0]
    html = render_report(
        evaluation,
        MATRIX,
        actions=[
            {"device_name": hostile, "action": hostile, "status": "planned", hostile: hostile}
        ],
        blocklists=[{"format": hostile, "list": hostile, "entries": 1, "sha256": hostile}],
        ingestion={"table": hostile, "sent": 1, "failed": 0, "dead_lettered": 0},
        cycle={"tenant": hostile, "cycle_id": hostile, hostile: hostile, "dry_run": True},
        top=len(HOSTILE_NAMES) + 40,
    )
    html.encode("utf-8")  # no lone surrogate survives
    page = parse_page(html)

    assert page.mismatches == []
    root = page.root
    assert root.find_all(lambda n: n.tag in ("script", "img", "b", "i")) == []
    assert [n.text() for n in root.find_all(lambda n: n.tag == "h1")] == [
        f"Defender for Endpoint coverage report: {hostile}"
    ]
    assert not [n for n in root.iter() for name in n.attrs if name.startswith("on")]
    assert all(
        a.attrs["href"].startswith(("#", "https://learn.microsoft.com/"))
        and " " not in a.attrs["href"]
        for a in root.by_attr("href")
    )
    assert "javascript:alert(document.domain)" in root.by_id("conflicts").text()

    names = {
        row.attrs["data-device-id"]: row.find_all(lambda n: n.attrs.get("class") == "device")[0]
        for row in root.by_id("silent-devices").by_attr("data-device-id")
    }
    for index, name in enumerate(HOSTILE_NAMES):
        assert names[f"hostile-{index}"].text() == SHOWN.get(name, name)


# --- what a cycle adds ----------------------------------------------------------------------------


ACTIONS = [
    {
        "device_id": "d-1",
        "device_name": "fin-lt-0142.contoso.com",
        "action": "enable_edr_block_mode",
        "status": "planned",
        "reason": "passive without EDR in block mode",
        "approval": "pending",
    },
    {"device_id": "d-2", "action": "enable_edr_block_mode", "status": "planned"},
    {"device_id": "d-3", "action": "tag_device", "status": "skipped", "reason": "cap reached"},
]


def test_a_dry_run_is_marked_and_every_action_is_listed(sample: Any) -> None:
    page = parse_page(render_report(sample, MATRIX, actions=ACTIONS, cycle={"dry_run": True}))
    metrics = page.metrics()

    assert metrics["dry-run"] == "true"
    assert "DRY RUN" in page.root.by_attr("data-metric", "dry-run")[0].text()
    assert "none of these actions was carried out" in page.root.by_id("actions").text()
    assert int(metrics["actions"]) == 3
    counts = {
        (n.attrs["data-action"], n.attrs["data-status"]): _count(n, "data-count")
        for n in page.root.by_id("action-counts").by_attr("data-count")
    }
    assert counts == {("enable_edr_block_mode", "planned"): 2, ("tag_device", "skipped"): 1}
    table = page.root.by_id("actions-table")
    header = [th.text() for th in table.find_all(lambda n: n.tag == "th")]
    assert header == ["device name", "device id", "action", "status", "reason", "approval"]
    assert len(table.find_all(lambda n: n.tag == "tr")) == 1 + len(ACTIONS)


def test_a_live_run_and_a_report_without_a_cycle_say_what_they_are(sample: Any) -> None:
    live = parse_page(render_report(sample, MATRIX, actions=ACTIONS, cycle={"dry_run": False}))
    assert live.metrics()["dry-run"] == "false"
    assert "LIVE RUN" in live.root.by_attr("data-metric", "dry-run")[0].text()

    bare = parse_page(render_report(sample, MATRIX))
    assert "dry-run" not in bare.metrics()
    assert "actions" not in bare.metrics()
    assert "no actions were planned" in bare.root.by_id("actions").text()
    assert "No blocklists were published" in bare.root.by_id("blocklists").text()


def test_blocklists_and_ingestion_show_counts_but_never_list_content(sample: Any) -> None:
    published = {
        "format": "squid-domains",
        "list": "block",
        "content": "SECRET-LIST-CONTENT\n" * 50,
        "sha256": "ab" * 32,
        "version": 3,
        "diff": {"added": 4, "removed": 2},
    }
    uploads = [
        {"table": "MdeAvCoverage_CL", "sent": 90, "rejected": 2, "failed": 8},
        {"table": "MdeBlockedAccess_CL", "sent": 5, "failed": 0, "dead_lettered": 0},
    ]
    page = parse_page(render_report(sample, MATRIX, blocklists=[published], ingestion=uploads))
    text = page.root.text()

    assert "SECRET-LIST-CONTENT" not in text
    row = page.root.by_id("blocklists-table").by_attr("data-format", "squid-domains")[0]
    assert "+4" in row.text()
    assert "\u22122" in row.text()
    assert "not stated" in row.text()
    metrics = page.metrics()
    assert (metrics["ingestion-sent"], metrics["ingestion-failed"]) == ("95", "8")
    assert metrics["ingestion-dead-lettered"] == "10"  # refused (2) plus failed twice (8)
    assert "10 row(s) did not reach Log Analytics" in page.root.by_id("ingestion").text()


# --- bad input ------------------------------------------------------------------------------------


def test_unreadable_device_records_are_named_and_the_rest_is_reported(sample: Any) -> None:
    evaluation = copy.deepcopy(sample)
    devices = evaluation["devices"]
    devices[1] = "not a device"
    del devices[2]["mode"]
    devices[3]["capabilities"]["tvm"]["status"] = "maybe"
    good = [d for i, d in enumerate(devices) if i not in (1, 2, 3)]

    report = build_report(evaluation, MATRIX)
    page = parse_page(report.html)

    assert len(report.problems) == 3
    assert report.problems[0].startswith("devices[1]: not an object")
    assert (
        report.problems[1]
        == f"devices[2] (device_id {devices[2]['device_id']!r}): mode: missing or not text"
    )
    assert "capabilities.tvm: no known status" in report.problems[2]
    metrics = page.metrics()
    assert int(metrics["devices"]) == len(good)
    assert int(metrics["devices-with-gaps"]) == sum(1 for d in good if d["gaps"])
    assert int(metrics["unreadable-devices"]) == 3
    warning = page.root.by_id("consistency").text()
    assert "3 device record(s) could not be read" in warning
    assert "summary devices_with_gaps says" in warning


def test_a_summary_that_disagrees_with_the_devices_is_flagged(sample: Any) -> None:
    evaluation = copy.deepcopy(sample)
    evaluation["summary"]["devices_with_gaps"] += 1
    evaluation["summary"]["matrix_version"] = "1999.1.1"
    page = parse_page(render_report(evaluation, MATRIX))
    warning = page.root.by_id("consistency").text()
    assert f"summary devices_with_gaps says {sample['summary']['devices_with_gaps'] + 1}" in warning
    assert "matrix 1999.1.1" in warning
    # The page still shows what the devices say.
    assert int(page.metrics()["devices-with-gaps"]) == sample["summary"]["devices_with_gaps"]


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ([], "must be a JSON object"),
        ({"summary": {}}, "no 'devices' list"),
        ({"devices": {"a": 1}}, "'devices' must be a list"),
        ({"devices": [], "rejected": "oops"}, "rejected must be a list"),
    ],
)
def test_a_document_that_is_not_an_evaluation_is_refused(evaluation: Any, message: str) -> None:
    with pytest.raises(ReportInputError, match=message):
        render_report(evaluation, MATRIX)


def test_an_empty_fleet_gives_a_report_of_zeros() -> None:
    page = parse_page(render_report({"devices": [], "rejected": [], "summary": {}}, MATRIX))
    assert page.mismatches == []
    metrics = page.metrics()
    assert (metrics["devices"], metrics["devices-with-gaps"], metrics["gap-share"]) == (
        "0",
        "0",
        "0.0",
    )
    assert "No devices were evaluated" in page.root.by_id("modes").text()


def test_the_same_inputs_give_the_same_page(sample: Any) -> None:
    first = render_report(sample, MATRIX, actions=ACTIONS, cycle={"cycle_id": "c-1"})
    assert render_report(sample, MATRIX, actions=ACTIONS, cycle={"cycle_id": "c-1"}) == first


# --- the command ----------------------------------------------------------------------------------


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), "utf-8")
    return path


def test_report_command_writes_the_page(tmp_path: Path, sample: Any) -> None:
    evaluation = _write(tmp_path / "evaluation.json", sample)
    cycle = _write(tmp_path / "cycle.json", {"cycle_id": "c-7", "dry_run": True})
    actions = _write(tmp_path / "actions.json", ACTIONS)
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()

    status = main(
        [
            "report",
            "--evaluation",
            str(evaluation),
            "--out",
            str(out),
            "--cycle",
            str(cycle),
            "--actions",
            str(actions),
        ]
    )

    assert status == 0
    page = parse_page(out.read_text("utf-8"))
    assert int(page.metrics()["devices"]) == sample["summary"]["devices"]
    assert page.metrics()["dry-run"] == "true"
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    assert out.stat().st_mode & 0o777 == 0o644


def test_report_command_exit_statuses(tmp_path: Path, sample: Any, capsys: Any) -> None:
    out = tmp_path / "report.html"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", "utf-8")

    assert main(["report", "--evaluation", str(broken), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["report", "--evaluation", str(tmp_path / "absent.json"), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    not_evaluation = _write(tmp_path / "list.json", [1, 2])
    assert main(["report", "--evaluation", str(not_evaluation), "--out", str(out)]) == 2
    assert not out.exists()

    damaged = copy.deepcopy(sample)
    damaged["devices"][0]["gaps"] = "all of them"
    evaluation = _write(tmp_path / "damaged.json", damaged)
    assert main(["report", "--evaluation", str(evaluation), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "unreadable: devices[0]" in err
    assert "gaps: not a list" in err
    assert (
        int(parse_page(out.read_text("utf-8")).metrics()["devices"]) == len(damaged["devices"]) - 1
    )

    assert main(["report", "--evaluation", str(evaluation), "--top", "0"]) == 2
