"""oxystats: an asyncio-first client for the Oxylabs Dashboard API.

One `await` turns a long date range into 31-day windows and pages, fetches
them concurrently within the account's rate limits, retries what is worth
retrying, and returns typed, merged results:

```python
import oxystats
from datetime import date

async with oxystats.AsyncClient() as client:  # reads OXYLABS_API_KEY
    report = await client.usage("HB", date(2025, 1, 1), date(2025, 12, 31), ["DAY"])
```

Everything public is importable from here; the modules behind it are private.
"""

from types import FunctionType

from oxystats._blocking import Client
from oxystats._client import AsyncClient, ClientStats
from oxystats._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    DatabaseError,
    DeadlineExceeded,
    OxystatsError,
    PermissionDeniedError,
    RateLimitError,
    RequestInfo,
    ResponseFormatError,
    ServerError,
    SyncInProgressError,
    UnknownInstanceWarning,
)
from oxystats._events import ClientEvent, EventHook, PauseEvent, RequestEvent
from oxystats._frames import usage_arrow_schema, usage_arrow_table, usage_columns
from oxystats._limiter import Account
from oxystats._limits import Limit
from oxystats._merge import UsageMerger
from oxystats._models import (
    FetchedPage,
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
from oxystats._options import DEFAULT_BASE_URL
from oxystats._prometheus import PrometheusMetrics
from oxystats._query import UsageQuery
from oxystats._retry import RetryEvent
from oxystats._streams import PageStream, RowStream
from oxystats._sync import SyncResult, SyncRun, sync_usage
from oxystats._types import DateLike, GroupByLike, Grouping, InstanceIds, ProductLike, Products
from oxystats._version import __version__ as __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "Account",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientEvent",
    "ClientStats",
    "DEFAULT_BASE_URL",
    "DatabaseError",
    "DateLike",
    "DeadlineExceeded",
    "EventHook",
    "FetchedPage",
    "GroupBy",
    "GroupByLike",
    "Grouping",
    "Instance",
    "InstanceIds",
    "InstancesPage",
    "Limit",
    "OxystatsError",
    "PageStream",
    "Pagination",
    "PauseEvent",
    "PermissionDeniedError",
    "Product",
    "ProductLike",
    "Products",
    "PrometheusMetrics",
    "RateLimitError",
    "RequestEvent",
    "RequestInfo",
    "ResponseFormatError",
    "RetryEvent",
    "RowStream",
    "ServerError",
    "SyncInProgressError",
    "SyncResult",
    "SyncRun",
    "UnknownInstanceWarning",
    "UsageMerger",
    "UsagePage",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "UsageTotals",
    "Window",
    "sync_usage",
    "usage_arrow_schema",
    "usage_arrow_table",
    "usage_columns",
]

# Tracebacks and reprs read `oxystats.AuthenticationError`, not the private
# module a name happens to live in (as httpx does).
for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type | FunctionType) and _public.__module__.startswith("oxystats."):
        _public.__module__ = "oxystats"
del _name, _public
