"""``python -m pipeline evaluate`` end to end on the bundled samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "evaluate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_json_output_matches_the_documented_shape_and_exit_says_rejected() -> None:
    result = run(
        "--input",
        "samples/deviceavinfo.json",
        "--tenant",
        "samples/tenant.json",
        "--format",
        "json",
    )
    assert result.returncode == 1  # one record in the sample has no id
    document = json.loads(result.stdout)
    assert set(document) == {"devices", "rejected", "summary"}
    devices = {d["device_name"]: d for d in document["devices"]}
    passive = devices["fin-lt-0142.contoso.com"]
    assert set(passive) >= {
        "device_id",
        "device_name",
        "mode",
        "mode_source",
        "capabilities",
        "findings",
        "gaps",
    }
    assert passive["mode"] == "passive"
    assert passive["mode_source"] == "deviceavinfo"
    assert passive["capabilities"]["indicator_file"]["status"] == "not_enforced"
    assert passive["capabilities"]["indicator_url"]["status"] == "unknown"
    assert "indicator_url" in passive["gaps"]
    assert {f["code"] for f in passive["findings"]} == {"EDR_BLOCK_MODE_MISSING"}

    summary = document["summary"]
    assert summary["devices"] == len(document["devices"]) == 9
    assert summary["rejected"] == 1
    assert summary["by_mode"]["passive"] == sum(d["mode"] == "passive" for d in document["devices"])
    assert summary["devices_with_gaps"] == sum(bool(d["gaps"]) for d in document["devices"])


def test_table_output_counts_match_the_json() -> None:
    args = ("--input", "samples/deviceavinfo.json", "--tenant", "samples/tenant.json")
    table = run(*args).stdout
    summary = json.loads(run(*args, "--format", "json").stdout)["summary"]
    assert f"Devices evaluated: {summary['devices']}" in table
    gaps = summary["devices_with_gaps"]
    assert f"does not enforce: {gaps} of {summary['devices']}" in table
    assert "EDR_BLOCK_MODE_MISSING" in table


def test_missing_file_and_bad_tenant_are_usage_errors(tmp_path: Path) -> None:
    missing = run("--input", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    tenant = tmp_path / "tenant.json"
    tenant.write_text('{"mdeLicence": "P2"}')
    bad = run("--input", "samples/deviceavinfo.json", "--tenant", str(tenant))
    assert bad.returncode == 2
    assert "unknown settings ['mdeLicence']" in bad.stderr


def test_clean_input_exits_zero(tmp_path: Path) -> None:
    page = tmp_path / "page.json"
    page.write_text(
        json.dumps(
            {"value": [{"id": "m", "osKind": "windows", "osPlatform": "Windows10", "avMode": "0"}]}
        )
    )
    result = run("--input", str(page), "--format", "json", "--out", str(tmp_path / "out.json"))
    assert result.returncode == 0
    assert json.loads((tmp_path / "out.json").read_text())["summary"]["devices"] == 1
