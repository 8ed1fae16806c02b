"""A small HTTP classifier that embeds the edgeai runtime, using only the standard library.

It loads a deploy bundle ONCE (the variant made for --device, sha256-verified), then serves JSON
predictions from a ThreadingHTTPServer. Requests are bounded: a body must declare its length and
stay under --max-body bytes, a batch under --max-batch, and a slow client is dropped after
--timeout seconds. Bad input gets a 4xx with a JSON error saying what was wrong.

    python examples/digits_deploy.py --out digits-bundle
    python examples/serve_classifier.py digits-bundle --device cpu --port 8000
    curl -s localhost:8000/v1/info
    curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' \\
         -d '{"inputs": {"pixel_values": [[[[0.0, 0.0, ...], ...]]]}}'

Endpoints:
    GET  /v1/health   {"status": "ok"}
    GET  /v1/info     inputs, outputs, labels, preprocessing, and what runs (engine, device, precision)
    POST /v1/predict  {"inputs": {name: nested list}} -> {"outputs": {...}, "predictions": [...]}
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

import edgeai
from edgeai.bundle import Bundle


class BadRequest(Exception):
    """A client error: the status to answer with and a message saying what to fix."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class Classifier:
    """The model, loaded once, and the request -> response logic (no HTTP here)."""

    def __init__(self, bundle_path: str, device: str, max_batch: int):
        self.bundle = Bundle(bundle_path)  # reads and checks the manifest
        self.model = edgeai.load(bundle_path, device=device)  # picks the variant, verifies its sha256
        self.max_batch = max_batch
        self.labels = self.bundle.labels

    def info(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle.path), "source": self.bundle.manifest["source"]["source"],
                "runtime": self.model.describe().to_dict(), "variant": self.model.source,
                "inputs": [s.to_dict() for s in self.model.inputs], "outputs": [s.to_dict() for s in self.model.outputs],
                "labels": self.labels, "preprocessing": self.bundle.preprocessing, "max_batch": self.max_batch}

    def predict(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), dict):
            names = [s.name for s in self.model.inputs]
            raise BadRequest(HTTPStatus.BAD_REQUEST, f'expected a JSON object {{"inputs": {{...}}}} with inputs {names}')
        feeds = {}
        for spec in self.model.inputs:
            if spec.name not in payload["inputs"]:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"missing input {spec.name!r}; the model takes {spec}")
            try:
                # JSON numbers become the dtype the model declares; ragged lists or strings fail here.
                feeds[spec.name] = np.asarray(payload["inputs"][spec.name], dtype=spec.dtype)
            except (ValueError, TypeError) as e:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"input {spec.name!r} is not a rectangular numeric array "
                                                         f"of {spec.dtype}: {e}") from None
            if feeds[spec.name].ndim and len(feeds[spec.name]) > self.max_batch:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"batch of {len(feeds[spec.name])} is over the limit of "
                                                         f"{self.max_batch}; split the request")
        unknown = sorted(set(payload["inputs"]) - set(feeds))
        if unknown:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"unknown input(s) {unknown}; the model takes {list(feeds)}")
        try:
            outputs = self.model.run(feeds)  # checks names, dtypes, ranks and fixed dims first
        except edgeai.InputMismatchError as e:
            raise BadRequest(HTTPStatus.BAD_REQUEST, str(e)) from None
        return {"outputs": {k: v.tolist() for k, v in outputs.items()}, "predictions": self._top1(outputs)}

    def _top1(self, outputs: dict[str, np.ndarray]) -> list[dict[str, Any]] | None:
        logits = next(iter(outputs.values()))
        if logits.ndim != 2:
            return None  # not a classifier head: the raw outputs are the answer
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        return [{"index": int(i), "label": self.labels[i] if self.labels and i < len(self.labels) else str(i),
                 "score": round(float(probs[row, i]), 6)} for row, i in enumerate(best)]


def make_handler(app: Classifier, max_body: int, timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgeai-classifier/1"

        def setup(self) -> None:
            self.timeout = timeout  # socket timeout: a client that stalls mid-request is dropped
            super().setup()

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/v1/health":
                self._reply(HTTPStatus.OK, {"status": "ok"})
            elif self.path == "/v1/info":
                self._reply(HTTPStatus.OK, app.info())
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}; use GET /v1/health, GET /v1/info, "
                                                  "POST /v1/predict")

        def do_POST(self) -> None:  # noqa: N802
            try:
                if self.path != "/v1/predict":
                    raise BadRequest(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; use POST /v1/predict")
                payload = self._read_json()
                self._reply(HTTPStatus.OK, app.predict(payload))
            except BadRequest as e:
                self._error(e.status, str(e))
            except Exception:  # a bug, not the client's fault: log it, answer 500 without details
                traceback.print_exc(file=sys.stderr)
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")

        def do_PUT(self) -> None:  # noqa: N802
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET or POST")

        do_DELETE = do_PATCH = do_PUT  # noqa: N815

        def _read_json(self) -> Any:
            if self.headers.get_content_type() != "application/json":
                raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header (chunked bodies are "
                                                             "not accepted)")
            if int(length) > max_body:
                self.close_connection = True  # do not read an oversized body
                raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes is over the limit "
                                                                      f"of {max_body}; send fewer samples")
            try:
                return json.loads(self.rfile.read(int(length)))
            except (ValueError, UnicodeDecodeError) as e:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {e}") from None

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._reply(status, {"error": message, "status": int(status)})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM (docker stop, systemd) stops the server the way Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="a bundle folder written by `edgeai deploy`")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a stalled client is dropped")
    args = parser.parse_args()
    try:
        app = Classifier(args.bundle, args.device, args.max_batch)
    except edgeai.EdgeAIError as e:  # a missing, tampered or incompatible bundle: say so and stop
        sys.exit(f"error: {e}")
    server = ThreadingHTTPServer((args.host, args.port), make_handler(app, args.max_body, args.timeout))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    print(f"serving {args.bundle} ({app.model.describe().summary()}) on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
