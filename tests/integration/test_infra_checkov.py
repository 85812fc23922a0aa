"""checkov's Bicep policies over infra/, offline: every failure is fixed or skipped with a reason.

checkov pins many packages, so it lives in its own virtual environment (.venv-checkov). The test
runs checkov once on a copy of infra/ with the skip comments removed: the checks that fail there
must be exactly the ones skipped in the real files, so no failure goes unexplained and no skip
outlives its reason. checkov exits 0 on a file it cannot parse, so parsing errors are asserted
separately, and the real files are parsed with checkov's own (older) Bicep parser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHECKOV_VENV = REPO / ".venv-checkov"
SKIP = re.compile(r"//\s*checkov:skip=(CKV_[A-Z0-9_]+):(.*)$")

if not (CHECKOV_VENV / "bin" / "checkov").is_file():
    pytest.skip(
        "checkov is not installed; install it with: python3.11 -m venv .venv-checkov && "
        "VIRTUAL_ENV=$PWD/.venv-checkov .venv/bin/uv pip install 'checkov==3.3.*'",
        allow_module_level=True,
    )


def _skips() -> set[tuple[str, str]]:
    """(file relative to infra/, check id) for every skip comment, each with a real reason."""
    found = set()
    for path in sorted((REPO / "infra").rglob("*.bicep")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := SKIP.search(line):
                assert len(match.group(2).strip()) >= 30, f"{path.name}: explain {match.group(1)}"
                found.add((str(path.relative_to(REPO / "infra")), match.group(1)))
    return found


def test_checkov_parses_every_file_with_its_own_parser() -> None:
    script = (
        "import pathlib, sys\n"
        "from pycep import BicepParser\n"
        "bad = []\n"
        "for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.bicep')):\n"
        "    try: BicepParser().parse(text=p.read_text())\n"
        "    except Exception as e: bad.append(f'{p}: {str(e).splitlines()[0]}')\n"
        "print('\\n'.join(bad))\n"
    )
    result = subprocess.run(
        [str(CHECKOV_VENV / "bin" / "python"), "-c", script, str(REPO / "infra")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert result.stdout.strip() == ""


def test_every_checkov_failure_is_exactly_one_explained_skip(tmp_path: Path) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(REPO / "infra", copy, ignore=shutil.ignore_patterns("scripts"))
    for path in copy.rglob("*.bicep"):
        kept = [line for line in path.read_text().splitlines() if not SKIP.search(line)]
        path.write_text("\n".join(kept) + "\n")

    command = [str(CHECKOV_VENV / "bin" / "checkov"), "-d", str(copy), "--framework", "bicep"]
    result = subprocess.run(
        [*command, "--skip-download", "--compact", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    failed = {
        (str(Path(c["file_abs_path"]).relative_to(copy)), c["check_id"])
        for c in report["results"]["failed_checks"]
    }

    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    assert failed == _skips()
