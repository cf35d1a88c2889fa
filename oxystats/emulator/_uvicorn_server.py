"""uvicorn's server, stopping as a server process does: what is still open gets closed.

Imported only when serving: the emulator's state loads without uvicorn.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

__all__ = ["EmulatorServer"]

_POLL = 0.05


class EmulatorServer(uvicorn.Server):
    """A `uvicorn.Server` whose graceful shutdown closes connections rather than answer them.

    uvicorn waits up to ``timeout_graceful_shutdown`` for the requests in
    progress, then cancels the ones still running and answers those that
    had sent nothing with a 500 of its own. A request that never ends by
    itself (the hang fault) would get that 500: an answer, which a stopping
    server does not give. This server waits as long, then closes the
    connections still open: their requests end as if the client had left,
    and the client sees the connection close without a response.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, let requests finish for the graceful timeout, close the rest."""
        timeout = self.config.timeout_graceful_shutdown
        if timeout is not None:
            for server in self.servers:
                server.close()
            connections = self.server_state.connections
            # Idle keep-alive connections close now; busy ones once their response is sent.
            for connection in list(connections):
                connection.shutdown()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            # Polled, as uvicorn polls it: the connection set signals nothing.
            while connections and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(_POLL)
            for connection in list(connections):
                connection.transport.close()
        await super().shutdown(sockets)
