"""oxystats: an asyncio-first client for the Oxylabs Dashboard API.

One ``await`` turns a long date range into 31-day windows and pages, fetches
them concurrently within the account's rate limits, retries what is worth
retrying, and returns typed, merged results::

    import oxystats
    from datetime import date

    async with oxystats.AsyncClient() as client:  # reads OXYLABS_API_KEY
        report = await client.usage(
            "HB", date(2025, 1, 1), date(2025, 12, 31), [oxystats.GroupBy.DAY]
        )
"""

from oxystats._client import AsyncClient, ClientStats, FetchedPage
from oxystats._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    OxystatsError,
    PermissionDeniedError,
    RateLimitError,
    RequestInfo,
    ResponseFormatError,
    ServerError,
    UnknownInstanceWarning,
)
from oxystats._limits import Account, Limit
from oxystats._models import (
    GroupBy,
    Instance,
    InstancesPage,
    Pagination,
    Product,
    UsagePage,
    UsageReport,
    UsageRow,
    UsageTotals,
    Window,
)
from oxystats._sync import Client

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "Account",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientStats",
    "FetchedPage",
    "GroupBy",
    "Instance",
    "InstancesPage",
    "Limit",
    "OxystatsError",
    "Pagination",
    "PermissionDeniedError",
    "Product",
    "RateLimitError",
    "RequestInfo",
    "ResponseFormatError",
    "ServerError",
    "UnknownInstanceWarning",
    "UsagePage",
    "UsageReport",
    "UsageRow",
    "UsageTotals",
    "Window",
]
