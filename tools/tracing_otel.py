"""The OpenTelemetry SDK behind tools/tracing.py: imported only when the variables turn traces on.

Spans are exported in batches by the SDK's ``BatchSpanProcessor`` through the OTLP/HTTP protobuf
exporter, which reads the standard ``OTEL_EXPORTER_OTLP_*`` variables itself. Every parent is
passed explicitly (calls run on worker threads; nothing relies on a thread's current context).
A failing exporter costs one warning line for the whole session, never a traceback; ``shutdown``
flushes what is left and gives up after a bounded wait, so an unreachable collector cannot hold
the exit (``-p`` included).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
    SpanProcessor,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["OtelTracer", "otlp_tracer", "tracer_with"]

log = logging.getLogger("midstream.tracing")
DEFAULT_TIMEOUT = 5.0  # seconds per export; the SDK's own default (10 s) is long to wait at exit
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


class _Said(logging.Handler):
    """The SDK's own complaints: kept for the one warning line, sent to midstream's log, never the terminal."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.last = record.getMessage()
        except Exception:
            self.last = str(record.msg)
        log.warning("opentelemetry: %s", self.last)


class _WarnOnce(SpanExporter):
    """The real exporter, whose first failure becomes one warning line; it goes on trying quietly."""

    def __init__(self, exporter: SpanExporter, where: str, said: _Said, warn: Callable[[str], None]) -> None:
        self._exporter, self._where, self._said, self._warn = exporter, where, said, warn
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception as error:  # an exporter bug must not reach the loop either
            self._said.last = f"{type(error).__name__}: {error}"
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.FAILURE and not self._warned:
            self._warned = True
            self._warn(f"warning: traces could not be exported to {self._where}"
                       + (f" ({self._said.last})" if self._said.last else "") + "; later failures are not shown")
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class _OtelSpan:
    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._ended = False

    def set(self, key: str, value: Any) -> None:
        if value is not None:
            self.span.set_attribute(key, value)

    def end(self, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if error:
            self.span.set_attribute("error.type", "midstream.error")
            self.span.set_status(Status(StatusCode.ERROR, error[:500]))
        self.span.end()

    def traceparent(self) -> str | None:
        context = self.span.get_span_context()
        if not context.is_valid:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class OtelTracer:
    """Spans through one ``TracerProvider``; ``shutdown`` flushes within ``timeout`` seconds."""

    enabled = True

    def __init__(self, provider: TracerProvider, *, capture_content: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 version: str = "") -> None:
        self.provider = provider
        self.capture_content = capture_content
        self._timeout = timeout
        self._tracer = provider.get_tracer("midstream", version or None)
        self._closed = False

    def start(self, name: str, *, parent: Any = None, attributes: Mapping[str, Any] | None = None,
              kind: str = "internal") -> _OtelSpan:
        context = trace.set_span_in_context(parent.span) if isinstance(parent, _OtelSpan) else Context()
        clean = {key: value for key, value in (attributes or {}).items() if value is not None}
        return _OtelSpan(self._tracer.start_span(name, context=context, kind=_KINDS.get(kind, SpanKind.INTERNAL),
                                                 attributes=clean))

    @contextlib.contextmanager
    def activated(self, span: Any) -> Iterator[None]:
        """``span`` as this thread's current span (for libraries that trace themselves), then as before."""
        if not isinstance(span, _OtelSpan):
            yield
            return
        token = attach(trace.set_span_in_context(span.span))
        try:
            yield
        finally:
            detach(token)

    def shutdown(self) -> None:
        """Export what is left, then stop; never waits much longer than one export's timeout."""
        if self._closed:
            return
        self._closed = True
        done = threading.Thread(target=self._shutdown, name="otel-shutdown", daemon=True)
        done.start()
        done.join(self._timeout + 1.0)
        if done.is_alive():
            log.warning("trace export still running after %.1f s at exit; left behind", self._timeout + 1.0)

    def _shutdown(self) -> None:
        try:
            self.provider.force_flush(int(self._timeout * 1000))
            self.provider.shutdown()
        except Exception as error:
            log.warning("trace shutdown failed: %s", error)


def _seconds(env: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        if value := env.get(name, "").strip():
            try:
                return float(value) / 1000 if name.endswith("_MS") else float(value)
            except ValueError:
                return None
    return None


def otlp_tracer(env: Mapping[str, str], *, warn: Callable[[str], None], version: str = "") -> OtelTracer:
    """Batched OTLP/HTTP protobuf export, configured by the standard variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    said = _Said()
    sdk_log = logging.getLogger("opentelemetry")
    for old in [h for h in sdk_log.handlers if isinstance(h, _Said)]:  # one per process, the newest
        sdk_log.removeHandler(old)
    sdk_log.addHandler(said)
    sdk_log.propagate = False  # the terminal gets our one line, not the SDK's retries
    timeout = _seconds(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT") or DEFAULT_TIMEOUT
    exporter = OTLPSpanExporter(timeout=timeout)
    where = getattr(exporter, "_endpoint", "") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "the collector")
    processor = BatchSpanProcessor(_WarnOnce(exporter, where, said, warn), schedule_delay_millis=1000)
    tracer = tracer_with(processor, capture_content=_capture(env), timeout=timeout, version=version,
                         service=env.get("OTEL_SERVICE_NAME", "").strip() or "midstream")
    trace.set_tracer_provider(tracer.provider)  # libraries that trace themselves (the MCP SDK) export with us
    return tracer


def _capture(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in ("true", "1")


def tracer_with(processor: SpanProcessor | SpanExporter, *, capture_content: bool = False,
                timeout: float = DEFAULT_TIMEOUT, version: str = "", service: str = "midstream") -> OtelTracer:
    """A tracer over ``processor`` (an exporter gets a synchronous processor: the tests' in-memory one)."""
    resource = Resource.create({"service.name": service, "service.version": version or "unknown"})
    if not isinstance(processor, SpanProcessor):
        processor = SimpleSpanProcessor(processor)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    return OtelTracer(provider, capture_content=capture_content, timeout=timeout, version=version)
