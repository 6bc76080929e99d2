"""The guestbook's front end: a small web app on Debian's python3 and
python3-redis (the image kctl/guestbook:v1, built by deploy/debimages.py).

Kubernetes' classic guestbook, adapted: entries are a Redis list; writes go
to the leader, reads to the followers (the leader with ``?from=leader``),
both found by their Service's DNS name. Settings:

* env ``REDIS_LEADER_HOST``, ``REDIS_FOLLOWER_HOST`` (a ConfigMap, envFrom)
  and ``REDIS_PASSWORD`` (a Secret, secretKeyRef);
* the page title, read from ``$GUESTBOOK_SETTINGS_DIR/title`` (a mounted
  ConfigMap) on every request, so a changed ConfigMap shows without a
  restart.

Routes: ``GET /`` (the page with a form), ``GET /entries`` (JSON),
``POST /entries`` (the body, plain text or the form's ``entry=`` field, is
appended; 201 with the entries read back from the leader), ``GET /healthz``
(200 when the leader answers PING). Port ``$PORT`` (8080).
"""
import html
import json
import os
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

KEY = "guestbook"
SETTINGS_DIR = os.environ.get("GUESTBOOK_SETTINGS_DIR", "/etc/guestbook")


def redis_client(host_var):
    return redis.Redis(host=os.environ.get(host_var, "localhost"), port=6379,
                       password=os.environ.get("REDIS_PASSWORD") or None,
                       socket_timeout=3, socket_connect_timeout=3, decode_responses=True)


LEADER = redis_client("REDIS_LEADER_HOST")
FOLLOWER = redis_client("REDIS_FOLLOWER_HOST")


def title():
    try:
        with open(os.path.join(SETTINGS_DIR, "title")) as f:
            return f.read().strip() or "Guestbook"
    except OSError:
        return "Guestbook"


class Handler(BaseHTTPRequestHandler):
    server_version = "kctl-guestbook/1"

    def log_request(self, code="-", size="-"):
        if not self.path.startswith("/healthz"):  # probes every 2 s would drown the log
            super().log_request(code, size)

    def answer(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def entries(self, source):
        return source.lrange(KEY, 0, -1)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        source = LEADER if query.get("from") == ["leader"] else FOLLOWER
        try:
            if url.path == "/healthz":
                LEADER.ping()
                return self.answer(200, "ok\n", "text/plain")
            if url.path == "/entries":
                return self.answer(200, json.dumps({"title": title(), "entries": self.entries(source),
                                                    "hostname": os.uname().nodename}) + "\n")
            if url.path == "/":
                items = "".join(f"<li>{html.escape(e)}</li>" for e in self.entries(source))
                page = (f"<!doctype html><title>{html.escape(title())}</title><h1>{html.escape(title())}</h1>"
                        f"<ul>{items}</ul><form method=post action=/entries>"
                        "<input name=entry autofocus><button>Sign</button></form>\n")
                return self.answer(200, page, "text/html; charset=utf-8")
        except redis.RedisError as exc:
            return self.answer(503, json.dumps({"error": str(exc)}) + "\n")
        self.answer(404, json.dumps({"error": "not found"}) + "\n")

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/entries":
            return self.answer(404, json.dumps({"error": "not found"}) + "\n")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        fields = urllib.parse.parse_qs(body)
        form = "entry" in fields and self.headers.get("Content-Type", "").startswith(
            "application/x-www-form-urlencoded")
        entry = (fields["entry"][0] if form else body).strip()
        if not entry:
            return self.answer(400, json.dumps({"error": "an entry must not be empty"}) + "\n")
        try:
            LEADER.rpush(KEY, entry)
            entries = self.entries(LEADER)
        except redis.RedisError as exc:
            return self.answer(503, json.dumps({"error": str(exc)}) + "\n")
        if form:
            self.send_response(303)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        self.answer(201, json.dumps({"entries": entries}) + "\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("", int(os.environ.get("PORT", "8080"))), Handler)
    print(f"guestbook listening on :{server.server_port}, leader {LEADER.connection_pool.connection_kwargs['host']}")
    server.serve_forever()
