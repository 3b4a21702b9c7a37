"""An OTLP/gRPC receiver for the end-to-end tests, built on the official
OpenTelemetry protobuf definitions (PyPI `opentelemetry-proto`) and gRPC
(`grpcio`), installed by `make otlp-deps` into .tools/otlp.

It accepts the logs service (what Envoy's `envoy.access_loggers.open_telemetry`
sends) and the trace service (what Envoy's OpenTelemetry tracer sends), and
writes every log record and span it receives, decoded, as one JSON line to
--out. Its port (chosen free on 127.0.0.1) is printed on stdout once it
listens. It runs until it is killed.

    .tools/otlp/bin/python tests/otlp_receiver.py --out received.jsonl
"""

import argparse
import base64
import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import (
    logs_service_pb2,
    logs_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)


def any_value(v):
    """An OTLP AnyValue as plain JSON."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Sink:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.out = open(path, "a", encoding="utf-8")

    def write(self, entry):
        with self.lock:
            self.out.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self.out.flush()


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        for resource_logs in request.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    self.sink.write(
                        {
                            "kind": "log",
                            "resource": resource,
                            "scope": scope_logs.scope.name,
                            "time_unix_nano": record.time_unix_nano,
                            "trace_id": record.trace_id.hex(),
                            "span_id": record.span_id.hex(),
                            "body": any_value(record.body),
                            "attributes": attributes(record.attributes),
                        }
                    )
        return logs_service_pb2.ExportLogsServiceResponse()


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.sink.write(
                        {
                            "kind": "span",
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                        }
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="JSON lines of what arrives")
    args = parser.parse_args()
    sink = Sink(args.out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(sink), server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(sink), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
