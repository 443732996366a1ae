"""Streamers with Transformers' put/end protocol: generate() calls put(prompt_ids) once, then put(new_ids) with
the (batch,) tokens of every step, then end().

TextStreamer prints decoded text as it becomes final; TextIteratorStreamer hands it to another thread as an
iterator. Both take any tokenizer with decode(ids, **decode_kwargs) (nemotron_c's or Transformers').
"""
import asyncio
import unicodedata
from queue import Queue

import numpy as np

__all__ = ["BaseStreamer", "TextStreamer", "TextIteratorStreamer", "AsyncTextIteratorStreamer"]


class BaseStreamer:
    """What generate() expects of a streamer."""

    def put(self, value):
        raise NotImplementedError

    def end(self):
        raise NotImplementedError


def is_cjk(cp):
    """Code points of the CJK Unified Ideographs blocks, which are printed as soon as they are decoded."""
    return any(low <= cp <= high for low, high in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class TextStreamer(BaseStreamer):
    """Prints text to stdout as soon as whole words are decoded (as Transformers' TextStreamer).

    skip_prompt: do not print the prompt. decode_kwargs go to tokenizer.decode (e.g. skip_special_tokens=True).
    """

    def __init__(self, tokenizer, skip_prompt=False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def put(self, value):
        value = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        if value.ndim > 1 and value.shape[0] > 1:
            raise ValueError("TextStreamer only supports batch size 1")
        if value.ndim > 2:  # Transformers fails on it (an AttributeError)
            raise ValueError(f"TextStreamer takes token ids of shape (1, n) or (n), got shape {value.shape}")
        if value.size and not np.issubdtype(value.dtype, np.integer):
            # Transformers' tokenizer refuses such ids (a TypeError); int() would truncate 1.7 to token 1
            raise TypeError(f"TextStreamer takes integer token ids, got {value.dtype}")
        value = value.reshape(-1)
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(int(t) for t in value)
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        pending = text[self.print_len:]
        if text.endswith("\n"):
            # a line is complete: start afresh, keeping the last token as context for leading spaces
            printable = pending
            self.token_cache = self.token_cache[-1:]
            self.print_len = len(self.tokenizer.decode(self.token_cache[-1], **self.decode_kwargs))
        elif text and is_cjk(ord(text[-1])):
            printable = pending
            self.print_len += len(printable)
        elif all(ch.isspace() or unicodedata.category(ch)[0] in "LMN" for ch in pending):
            printable = pending
            self.print_len += len(printable)
        else:
            # symbols may still change with the next token: print up to the last space
            printable = text[self.print_len:text.rfind(" ") + 1]
            self.print_len += len(printable)
        self.on_finalized_text(printable)

    def end(self):
        printable = ""
        if self.token_cache:
            printable = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)[self.print_len:]
            self.token_cache = []
            self.print_len = 0
        self.next_tokens_are_prompt = True
        self.on_finalized_text(printable, stream_end=True)

    def on_finalized_text(self, text, stream_end=False):
        print(text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """Queues the text for another thread, which iterates over it (generate() runs in a worker thread).

    timeout: seconds a reader waits for the next piece before queue.Empty is raised (None: forever).
    """

    def __init__(self, tokenizer, skip_prompt=False, timeout=None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text, stream_end=False):
        self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self):
        value = self.text_queue.get(timeout=self.timeout)
        if value == self.stop_signal:
            raise StopIteration()
        return value


class AsyncTextIteratorStreamer(TextStreamer):
    """TextIteratorStreamer for asyncio: `async for text in streamer` while generate() runs in another thread.

    Make it inside a coroutine (it keeps the running event loop). timeout: seconds to wait for the next piece before
    TimeoutError (None: forever).
    """

    def __init__(self, tokenizer, skip_prompt=False, timeout=None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue = asyncio.Queue()
        self.stop_signal = None
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()

    def on_finalized_text(self, text, stream_end=False):
        # called from generate()'s thread: the queue belongs to the event loop's
        self.loop.call_soon_threadsafe(self.text_queue.put_nowait, text)
        if stream_end:
            self.loop.call_soon_threadsafe(self.text_queue.put_nowait, self.stop_signal)

    def __aiter__(self):
        return self

    async def __anext__(self):
        value = await asyncio.wait_for(self.text_queue.get(), self.timeout)  # asyncio.timeout is Python 3.11's
        if value == self.stop_signal:
            raise StopAsyncIteration()
        return value
