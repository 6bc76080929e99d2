"""A tiny web app: answers every GET with $GREETING and the pod's name."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('GREETING', 'Hello')} (pod {os.uname().nodename})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print("hello: listening on :8000")
    ThreadingHTTPServer(("", 8000), Hello).serve_forever()
