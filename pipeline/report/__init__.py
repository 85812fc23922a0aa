"""The HTML report of an evaluation (and, when a cycle made it, of what the cycle did).

    html = render_report(evaluation, load_matrix().to_json(), actions=..., cycle=...)

``build_report`` returns the same page together with the device records it had to leave out.
"""

from pipeline.report.html import (
    DEFAULT_TOP,
    SILENT_CAPABILITIES,
    Report,
    ReportInputError,
    build_report,
    render_report,
)

__all__ = [
    "DEFAULT_TOP",
    "SILENT_CAPABILITIES",
    "Report",
    "ReportInputError",
    "build_report",
    "render_report",
]
