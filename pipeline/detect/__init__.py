"""Streaming detection: connections from devices that cannot block, to what the tenant blocks.

* ``envelope``: the Defender streaming API's Event Hubs messages, parsed into typed events;
  unreadable records come back as ``PoisonRecord`` with the reason;
* ``matcher``: ``BlocklistIndex``, the blocklist's normalised entries indexed for one lookup per
  connection (domain and subdomains, exact host, exact address; Allow wins);
* ``modes_cache``: ``ModesCache``, each device's newest known Defender Antivirus mode;
* ``stream``: ``StreamDetector.detect(bodies)`` → ``MdeBlockedAccess_CL`` rows, poison records and
  counts.

Pure: no Azure import and no I/O. The function app loads the index and the cache from storage
and hands the rows to the Log Analytics sink.
"""

from pipeline.detect.envelope import PoisonRecord, StreamEvent, parse_batch
from pipeline.detect.matcher import (
    ENTRIES_BLOB,
    BlocklistIndex,
    Match,
    entries_document,
    index_from_document,
)
from pipeline.detect.modes_cache import DeviceMode, ModesCache, UnknownDevicePolicy
from pipeline.detect.stream import StreamDetector, StreamResult

__all__ = [
    "ENTRIES_BLOB",
    "BlocklistIndex",
    "DeviceMode",
    "Match",
    "ModesCache",
    "PoisonRecord",
    "StreamDetector",
    "StreamEvent",
    "StreamResult",
    "UnknownDevicePolicy",
    "entries_document",
    "index_from_document",
    "parse_batch",
]
