"""A scripted stand-in for the OpenAI and Anthropic HTTP APIs, for testing the real SDK clients.

It listens on 127.0.0.1 (a free port) in a background thread and answers
`POST /v1/chat/completions` in OpenAI's wire format and `POST /v1/messages` in Anthropic's
(server-sent events when the request asks to stream). Each request takes the next reply from
a script; when the script runs out, `default` answers. Requests are recorded so tests can
assert on what the client sent.

Like the local servers users run, it can also list its models (`GET /v1/models`, with a
`max_model_len` when `context_window` is set), count tokens (`POST /tokenize` as vLLM does,
`/extras/tokenize/count` as llama-cpp-python does, `/v1/messages/count_tokens` as Anthropic
does; one token per `chars_per_token` characters), and refuse a prompt that does not fit its
window with the error text those servers use.

    with FakeLLMServer() as server:
        server.script(rate_limited(retry_after="2"), answer("hello"))
        client = OpenAI(base_url=server.openai_base_url, api_key="test")
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from harness.events import Event

ReplyKind = Literal["answer", "error", "malformed", "drop", "stream_error", "truncated", "plain_json", "empty"]


@dataclass(frozen=True)
class Reply:
    """One scripted response. Build them with the functions below."""

    kind: ReplyKind
    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    error_code: str | None = None
    message: str = ""
    input_tokens: int = 120
    output_tokens: int = 40
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    thinking: str | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0
    #: Seconds between the events of a streamed answer (a slow server writing token by token).
    chunk_delay_s: float = 0.0
    #: Characters per streamed text event.
    chunk_chars: int = 40
    model: str | None = None


def answer(text: str, **fields: Any) -> Reply:
    """A normal answer; `fields` set usage (`input_tokens`, `cached_tokens`, ...) and the like."""
    return Reply("answer", text=text, **fields)


def error(status: int, message: str, *, error_type: str | None = None, **fields: Any) -> Reply:
    return Reply("error", status=status, message=message, error_type=error_type, **fields)


def rate_limited(retry_after: str | None = "1", *, retry_after_ms: str | None = None, **fields: Any) -> Reply:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    return Reply("error", status=429, message="Rate limit reached", headers=headers, **fields)


def server_error(status: int = 500) -> Reply:
    return Reply("error", status=status, message="The server had an error while processing your request")


def overloaded() -> Reply:
    return Reply("error", status=529, message="Overloaded", error_type="overloaded_error")


def bad_request(message: str = "prompt is too long: 250000 tokens > 200000 maximum", **fields: Any) -> Reply:
    return Reply("error", status=400, message=message, **fields)


def malformed() -> Reply:
    """A 200 whose body is not JSON (or, streaming, an event whose data is not JSON)."""
    return Reply("malformed")


def dropped() -> Reply:
    """Headers and part of the body, then the connection closes."""
    return Reply("drop", text="this answer will never arrive in full " * 20)


def overloaded_mid_stream() -> Reply:
    """Anthropic streams only: a 200 stream that starts well, then carries an `error` event."""
    return Reply("stream_error", text="the start of an answer", message="Overloaded", error_type="overloaded_error")


def truncated_stream() -> Reply:
    """Anthropic streams only: half the events, then a clean end of the body (no `message_stop`)."""
    return Reply("truncated", text="an answer that stops " * 10)


def plain_json(text: str = "an answer that was not streamed") -> Reply:
    """A plain JSON body, even to a request that asked for a stream (gateways and proxies do this)."""
    return Reply("plain_json", text=text)


def empty_choice() -> Reply:
    """OpenAI: a completion (or stream) with no choices. Anthropic: a message with no content."""
    return Reply("empty")


def record_change_answer(track: str, task_id: str) -> Reply:
    """An answer that makes the task's human change, as SEARCH/REPLACE blocks (what the oracle says)."""
    from harness.coder.edits import render_block
    from harness.manifests.tracks import load_track
    from harness.models.providers.oracle import diff_blocks

    loaded = load_track(track)
    task = next(t for t in loaded.tasks() if t.id == task_id)
    old, new = loaded.record(task.from_record), loaded.record(task.to_record)
    blocks = diff_blocks(old.code(), new.code(), old.script)
    body = "\n".join(render_block(b.file, b.search, b.replace) for b in blocks)
    return answer(f"Making the change of {task.to_record}.\n\n{body}", input_tokens=6000, output_tokens=900)


_DEFAULT_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class Recorder:
    """Stands in for `time.sleep` and the progress display."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.events: list[Event] = []

    @property
    def statuses(self) -> list[str]:
        return [e.message for e in self.events if e.kind == "model_status"]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLMServer:
    def __init__(self) -> None:
        self.default: Reply = answer("OK")
        self.requests: list[Request] = []
        self.max_in_flight = 0
        #: The window the server enforces (and reports, with `report_window`); None: it takes anything.
        self.context_window: int | None = None
        self.report_window = True
        #: Characters per token of its tokenizer; None: it has no tokenize endpoint.
        self.chars_per_token: float | None = None
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-llm", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, instead: Reply | None = None) -> Reply:
        """The next scripted reply; `instead` answers without using it up (a refused prompt)."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if instead is not None:
                return instead
            return self._queue.popleft() if self._queue else self.default

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer
    # HTTP/1.1 keeps connections alive, as the SDKs' pools expect, and allows chunked streams.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})
            return
        card: dict[str, Any] = {"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}
        if self.fake.context_window is not None and self.fake.report_window:
            card["max_model_len"] = self.fake.context_window
        self._send_json(200, {"object": "list", "data": [card]})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        path = self.path.rstrip("/")
        if path in ("/tokenize", "/extras/tokenize/count", "/v1/messages/count_tokens"):
            self._send_count(path, request)
            return
        anthropic = path.endswith("/messages")
        if not anthropic and not path.endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})
            return
        with self.fake._lock:
            self.fake.requests.append(request)
        reply = self.fake._next(instead=self._window_error(body, anthropic))
        try:
            self._reply(reply, body, anthropic)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on this answer (a time limit, a cancel): nothing to tell it
        finally:
            self.fake._done()

    def _reply(self, reply: Reply, body: dict[str, Any], anthropic: bool) -> None:
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.kind == "error":
            self._send_error(reply, anthropic)
        elif reply.kind == "plain_json":
            self._send_json(200, _anthropic_message(reply, body) if anthropic else _openai_completion(reply, body))
        elif anthropic and body.get("stream"):
            self._send_anthropic_stream(reply, body)
        elif body.get("stream"):
            self._send_openai_stream(reply, body)
        elif reply.kind == "malformed":
            self._send_raw(200, b'{"id": "broken", "choices": [{"message": ', "application/json")
        else:
            payload = _anthropic_message(reply, body) if anthropic else _openai_completion(reply, body)
            self._send_json(200, payload, drop=reply.kind in ("drop", "stream_error", "truncated"))

    def _tokens(self, body: dict[str, Any]) -> int:
        texts = [str(m.get("content", "")) for m in body.get("messages", [])] + [str(body.get("system") or "")]
        texts.append(str(body.get("input") or ""))
        return math.ceil(sum(len(t) for t in texts) / (self.fake.chars_per_token or 4.0))

    def _send_count(self, path: str, request: Request) -> None:
        if self.fake.chars_per_token is None:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found_error"}})
            return
        with self.fake._lock:
            self.fake.requests.append(request)
        count = self._tokens(request.body)
        self._send_json(200, {"input_tokens": count} if path.endswith("count_tokens") else {"count": count})

    def _window_error(self, body: dict[str, Any], anthropic: bool) -> Reply | None:
        window = self.fake.context_window
        if window is None:
            return None
        prompt = self._tokens(body)
        answer_cap = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        if prompt > window:
            # llama-cpp-python's words (Anthropic's would do as well: both name the window).
            return bad_request(f"Requested tokens ({prompt}) exceed context window of {window}")
        if prompt + answer_cap > window:
            return bad_request(
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{prompt + answer_cap} tokens ({prompt} in the messages, {answer_cap} in the completion)."
            )
        return None

    def _send_openai_stream(self, reply: Reply, request: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = _openai_events(reply, request)
        if reply.kind == "malformed":
            events = [*events[:2], "{not json"]
        elif reply.kind == "truncated":
            events = events[: len(events) // 2]
        for i, data in enumerate(events):
            if reply.kind == "drop" and i == len(events) // 2:
                self._hang_up()
                return
            if reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            self._write_chunk(f"data: {data}\n\n".encode())
        if reply.kind != "truncated":
            self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, chunk: bytes) -> None:
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def _send_error(self, reply: Reply, anthropic: bool) -> None:
        error_type = reply.error_type or _DEFAULT_ERROR_TYPES.get(reply.status, "api_error")
        if anthropic:
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": error_type, "message": reply.message},
                "request_id": "req_fake",
            }
        else:
            payload = {"error": {"message": reply.message, "type": error_type, "param": None, "code": reply.error_code}}
        self._send_json(reply.status, payload, headers=reply.headers)

    def _send_json(
        self, status: int, payload: object, *, headers: dict[str, str] | None = None, drop: bool = False
    ) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers=headers, drop=drop)

    def _send_raw(
        self,
        status: int,
        data: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if drop:
            self.wfile.write(data[: len(data) // 2])
            self._hang_up()
        else:
            self.wfile.write(data)

    def _hang_up(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_anthropic_stream(self, reply: Reply, request: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = _anthropic_events(reply, request)
        if reply.kind == "malformed":
            events = [("message_start", "{not json")]
        elif reply.kind == "stream_error":
            error = {"type": "error", "error": {"type": reply.error_type, "message": reply.message}}
            events = [*events[:3], ("error", json.dumps(error))]
        elif reply.kind == "truncated":
            events = events[: len(events) // 2]
        for i, (event, data) in enumerate(events):
            if reply.kind == "drop" and i == len(events) // 2:
                self._hang_up()
                return
            if reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            self._write_chunk(f"event: {event}\ndata: {data}\n\n".encode())
        self.wfile.write(b"0\r\n\r\n")


def _openai_completion(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.text, "refusal": None},
        "finish_reason": reply.finish_reason or "stop",
        "logprobs": None,
    }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or request.get("model", "fake"),
        "choices": [] if reply.kind == "empty" else [choice],
        "usage": _openai_usage(reply),
    }


def _openai_events(reply: Reply, request: dict[str, Any]) -> list[str]:
    """The data lines of a streamed chat completion: role, text pieces, finish, then usage when asked."""
    head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time())}
    head["model"] = reply.model or request.get("model", "fake")

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return json.dumps(head | {"choices": choices} | extra)

    if reply.kind == "empty":
        return [chunk(None), chunk(None)]
    events = [chunk({"role": "assistant", "content": ""})]
    size = max(reply.chunk_chars, 1)
    # vLLM and DeepSeek stream a reasoning model's thinking as `reasoning_content` before the answer.
    thinking = reply.thinking or ""
    events += [chunk({"reasoning_content": thinking[i : i + size]}) for i in range(0, len(thinking), size)]
    events += [chunk({"content": reply.text[i : i + size]}) for i in range(0, len(reply.text), size)]
    events.append(chunk({}, reply.finish_reason or "stop"))
    if (request.get("stream_options") or {}).get("include_usage"):
        events.append(chunk(None, usage=_openai_usage(reply)))
    return events


def _openai_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0},
    }


def _anthropic_usage(reply: Reply) -> dict[str, Any]:
    # Anthropic counts cache reads apart from `input_tokens`; the fake's `input_tokens` is the total.
    usage: dict[str, Any] = {
        "input_tokens": reply.input_tokens - reply.cached_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation_input_tokens": 0,
        "output_tokens": reply.output_tokens,
    }
    if reply.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.reasoning_tokens}
    return usage


def _anthropic_content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.kind == "empty":
        return blocks
    if reply.thinking is not None:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": "sig"})
    blocks.append({"type": "text", "text": reply.text})
    return blocks


def _anthropic_message(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": reply.model or request.get("model", "fake"),
        "content": _anthropic_content(reply),
        "stop_reason": reply.finish_reason or "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(reply),
    }


def _anthropic_events(reply: Reply, request: dict[str, Any]) -> list[tuple[str, str]]:
    usage = _anthropic_usage(reply)
    start = _anthropic_message(reply, request) | {"content": [], "stop_reason": None}
    start["usage"] = usage | {"output_tokens": 1}
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(_anthropic_content(reply)):
        kind = block["type"]
        empty = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else block | {"text": ""}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty}))
        whole = block["thinking"] if kind == "thinking" else block["text"]
        size = max(reply.chunk_chars, 1)
        for piece in [whole[i : i + size] for i in range(0, len(whole), size)]:
            delta = (
                {"type": "thinking_delta", "thinking": piece}
                if kind == "thinking"
                else {"type": "text_delta", "text": piece}
            )
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        if kind == "thinking":
            delta = {"type": "signature_delta", "signature": "sig"}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("ping", {"type": "ping"}))
    delta_usage = {"output_tokens": reply.output_tokens}
    if "output_tokens_details" in usage:
        delta_usage["output_tokens_details"] = usage["output_tokens_details"]
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.finish_reason or "end_turn", "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return [(event, json.dumps(data)) for event, data in events]
