"""msgstatus's own HTTP/1.1 transport: a keep-alive pool over anyio streams framed with h11
(``_pool``), the exchange that sends botocore-signed requests over it (``_botocore``) and an
``httpx.AsyncBaseTransport`` over the same pool (``_httpx``). Private: none of it is public API."""
