"""Where the pipeline's results go: Log Analytics rows, the audit trail, and the cycle lease.

* ``log_analytics``: validated, chunked uploads through the Logs Ingestion API, with one retry
  and a dead-letter blob for what still does not arrive (``LogAnalyticsSink``, ``row_id``);
* ``audit``: the append-only audit trail in Table Storage, indexed by cycle, device and day
  (``AuditTrail``);
* ``lease``: the blob lease that lets only one cycle act at a time (``CycleLease``).

Sinks write what they are given; they never decide a verdict.
"""

from pipeline.sinks.audit import AuditEvent, AuditKind, AuditPage, AuditTrail, AuditWriteError
from pipeline.sinks.lease import CycleLease, Lease, LeaseHeld, LeaseLost
from pipeline.sinks.log_analytics import (
    DeadLetter,
    DeadLetterStore,
    DeadLetterWriteError,
    LogAnalyticsSink,
    UploadResult,
    row_id,
)

__all__ = [
    "AuditEvent",
    "AuditKind",
    "AuditPage",
    "AuditTrail",
    "AuditWriteError",
    "CycleLease",
    "DeadLetter",
    "DeadLetterStore",
    "DeadLetterWriteError",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "LogAnalyticsSink",
    "UploadResult",
    "row_id",
]
