"""A TCP proxy to Postgres that can cut the network, for fault tests.

A cut is what a partition looks like from the client: bytes sent get no
answer, new connections hang, nothing is closed. When the network heals,
the connections that lived through the cut are reset (the server, in a real
partition, has long since given up on them) and new ones go through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class NetCut:
    """Listens on 127.0.0.1:<port> and forwards to the Postgres at target_host:target_port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.cut = False
        self.connections = 0
        self._transports: set[asyncio.BaseTransport] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port: int = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if not self.cut:  # in a cut the bytes are lost
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._transports.add(client_w.transport)
        self.connections += 1
        while self.cut:  # a new connection hangs until the network heals
            await asyncio.sleep(0.05)
        if client_w.transport.is_closing():
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._transports.add(server_w.transport)
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    def partition(self, seconds: float) -> None:
        """Cut the network for `seconds`, then reset every connection that saw the cut."""
        self.cut = True
        time.sleep(seconds)

        def heal() -> None:
            for transport in list(self._transports):
                transport.abort()
            self._transports.clear()
            self.cut = False

        self._loop.call_soon_threadsafe(heal)

    def close(self) -> None:
        """Stop the proxy and reset everything through it."""

        async def stop() -> None:
            self._server.close()
            for transport in list(self._transports):
                transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
