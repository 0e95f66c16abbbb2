"""msgstatus's own HTTP/1.1 transport: a keep-alive pool framed by its own codec (``_pool``,
``_http11``; on asyncio over asyncio's own transports, ``_aio``; on trio over anyio's streams),
the exchange that sends botocore-signed requests over it (``_botocore``) and an
``httpx.AsyncBaseTransport`` over the same pool (``_httpx``). Private: none of it is public API."""
