"""The events of one request, handed from the engine's thread to whoever reads them."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator

from llmcore.engine.types import DoneEvent, Event, GenerationRequest, TokenEvent


class GenerationStream:
    """Events of one request. Iterate it once, from a thread (`for`) or from one asyncio loop
    (`async for`); `cancel()` stops it before its next token."""

    def __init__(self, request: GenerationRequest, stream_id: int) -> None:
        self.request = request
        self.id = stream_id
        self.submitted_at = time.perf_counter()
        self._sync: queue.Queue[Event] = queue.Queue()
        self._async: tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]] | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._closed = False  # the Done event was pushed

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """No token event is delivered after this returns; the stream ends with reason "cancelled"."""
        with self._lock:
            self._cancelled = True

    def push(self, event: Event) -> bool:
        """Called by the engine's thread. Returns False (and drops the token) once cancelled."""
        with self._lock:
            if self._closed or (self._cancelled and isinstance(event, TokenEvent)):
                return False
            self._closed = isinstance(event, DoneEvent)
            if self._async is None:
                self._sync.put(event)
                return True
            loop, aqueue = self._async
        try:  # hand the event to the consumer's loop; an asyncio.Queue is not thread-safe
            loop.call_soon_threadsafe(aqueue.put_nowait, event)
        except RuntimeError:  # the consumer's loop is closed: nobody listens any more
            self.cancel()
        return True

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self._sync.get()
            if self._cancelled and isinstance(event, TokenEvent):
                continue  # queued before the cancel, but the consumer asked for no more tokens
            yield event
            if isinstance(event, DoneEvent):
                return

    def events(self) -> list[Event]:
        return list(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        aqueue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:  # switch delivery to this loop, moving what already arrived
            while not self._sync.empty():
                aqueue.put_nowait(self._sync.get_nowait())
            self._async = (asyncio.get_running_loop(), aqueue)
        try:
            while True:
                event = await aqueue.get()
                if self._cancelled and isinstance(event, TokenEvent):
                    continue
                yield event
                if isinstance(event, DoneEvent):
                    return
        except (asyncio.CancelledError, GeneratorExit):
            self.cancel()  # the consumer went away (a closed WebSocket): stop spending compute
            raise
