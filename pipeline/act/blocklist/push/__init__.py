"""Push the block list into a cloud proxy's own list: a Zscaler URL category, a Netskope URL list.

Both targets share one interface (:class:`PushTarget`)::

    target = ZscalerTarget.from_settings(ZscalerSettings.from_env(os.environ))
    prepared = target.prepare(blocklists.block)      # values the service takes, and omissions
    result = target.push(prepared.values, previous)  # delta when previous is known, else replace
    previous = result.entries                        # keep for the next push

Values only ever come from normalised entries (``prepare``) and are screened again against the
service's syntax in ``push``, so nothing but a well-formed host, address or URL reaches an API.
"""

from pipeline.act.blocklist.push.base import (
    ApiSession,
    Prepared,
    PushApiError,
    PushAuthError,
    PushConfigError,
    PushError,
    PushRateLimitedError,
    PushResponseError,
    PushResult,
    PushTarget,
    PushTransportError,
    Refused,
    RetryPolicy,
    SentRequest,
)
from pipeline.act.blocklist.push.netskope import NetskopeSettings, NetskopeTarget, TokenHeader
from pipeline.act.blocklist.push.zscaler import (
    BearerCredentials,
    SessionCredentials,
    ZIdentityTokens,
    ZscalerSettings,
    ZscalerTarget,
)

__all__ = [
    "ApiSession",
    "BearerCredentials",
    "NetskopeSettings",
    "NetskopeTarget",
    "Prepared",
    "PushApiError",
    "PushAuthError",
    "PushConfigError",
    "PushError",
    "PushRateLimitedError",
    "PushResponseError",
    "PushResult",
    "PushTarget",
    "PushTransportError",
    "Refused",
    "RetryPolicy",
    "SentRequest",
    "SessionCredentials",
    "TokenHeader",
    "ZIdentityTokens",
    "ZscalerSettings",
    "ZscalerTarget",
]
