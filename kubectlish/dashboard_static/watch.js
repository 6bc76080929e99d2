// List, then watch from the list's resourceVersion; list again on 410 Gone.
//
// One Collection per resource (e.g. /api/v1/pods), cluster-wide: the page
// filters by namespace itself, so changing the namespace never reopens a
// stream. Lists are plain fetch()es through the dashboard's proxy. Watches
// are the same GETs, but carried over one WebSocket (/dashboard/streams,
// kubectlish/dashboard.py) because a browser opens at most 6 HTTP/1.1
// connections per host and the page holds more watches than that; the text
// arrives as the API server writes it, one JSON event per line. When a
// stream ends (the server's timeout, a restart) the watch resumes from the
// last resourceVersion seen; an ERROR event with code 410 (that version was
// compacted away) starts over with a fresh list. Failures back off up to 5 s.

// Many GET streams over one WebSocket: open(path, onData) -> {status, done, cancel}.
class Streams {
  constructor() {
    this.ws = null;
    this.ready = null;
    this.next = 1;
    this.open_ = new Map();  // id -> {onData, resolve, reject, onStatus}
  }

  connect() {
    if (this.ready) return this.ready;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/dashboard/streams`;
    this.ready = new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => { this.ws = ws; resolve(ws); };
      ws.onmessage = (ev) => this.dispatch(JSON.parse(ev.data));
      ws.onclose = () => {
        this.ws = null;
        this.ready = null;
        reject(new Error("stream connection closed"));
        for (const s of this.open_.values()) s.reject(new Error("stream connection closed"));
        this.open_.clear();
      };
    });
    return this.ready;
  }

  dispatch(msg) {
    const s = this.open_.get(msg.id);
    if (!s) return;
    if (msg.status !== undefined && msg.status !== 200) {
      this.open_.delete(msg.id);
      s.reject(Object.assign(new Error(`HTTP ${msg.status}${msg.error ? ": " + msg.error : ""}`), { status: msg.status }));
      return;
    }
    if (msg.data) s.onData(msg.data);
    if (msg.error) { this.open_.delete(msg.id); s.reject(new Error(msg.error)); return; }
    if (msg.end) { this.open_.delete(msg.id); s.resolve(); }
  }

  async open(path, onData) {
    const ws = await this.connect();
    const id = this.next++;
    const done = new Promise((resolve, reject) => this.open_.set(id, { onData, resolve, reject }));
    ws.send(JSON.stringify({ op: "open", id, path }));
    const cancel = () => {
      const s = this.open_.get(id);
      if (!s) return;
      this.open_.delete(id);
      if (this.ws) this.ws.send(JSON.stringify({ op: "close", id }));
      s.resolve();
    };
    return { done, cancel };
  }
}

const streams = new Streams();

export class Collection {
  constructor(path, onChange) {
    this.path = path;           // e.g. "/apis/apps/v1/deployments"
    this.onChange = onChange;   // called after every change (the caller batches renders)
    this.items = new Map();     // "namespace/name" -> object
    this.served = null;         // null: not known yet; false: 404 (kind not served)
    this.error = "";
    this.stopped = false;
    this.cancel = null;
  }

  static key(obj) {
    const m = obj.metadata || {};
    return (m.namespace ? m.namespace + "/" : "") + m.name;
  }

  list() { return [...this.items.values()]; }

  stop() {
    this.stopped = true;
    if (this.cancel) this.cancel();
  }

  async run() {
    let delay = 250;
    let rv = null;
    while (!this.stopped) {
      try {
        if (rv === null) rv = await this.relist();
        if (rv === null) return;  // not served
        rv = await this.watch(rv);
        delay = 250;
      } catch (err) {
        if (this.stopped) return;
        this.error = String(err.message || err);
        this.onChange();
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
        rv = null;  // after a failure, start from a fresh list
      }
    }
  }

  async relist() {
    const resp = await fetch(this.path, { headers: { Accept: "application/json" } });
    if (resp.status === 404) {
      this.served = false;
      this.onChange();
      return null;
    }
    if (!resp.ok) throw new Error(`${this.path}: HTTP ${resp.status}`);
    const list = await resp.json();
    this.items.clear();
    for (const obj of list.items || []) this.items.set(Collection.key(obj), obj);
    this.served = true;
    this.error = "";
    this.onChange();
    return list.metadata.resourceVersion;
  }

  // Returns the resourceVersion to resume from, or null to re-list.
  async watch(rv) {
    const path = `${this.path}?watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(rv)}`;
    let buf = "";
    let result = rv;
    let failure = null;
    const handle = await streams.open(path, (text) => {
      buf += text;
      let nl;
      while (!failure && (nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const ev = JSON.parse(line);
        if (ev.type === "ERROR") {
          // 410: expired, list again; anything else: fail, back off, list again.
          failure = ev.object && ev.object.code === 410 ? "expired"
            : new Error(`watch ${this.path}: ${(ev.object && ev.object.message) || "error"}`);
          handle.cancel();
          return;
        }
        result = (ev.object.metadata && ev.object.metadata.resourceVersion) || result;
        this.apply(ev);
      }
    });
    this.cancel = handle.cancel;
    try {
      await handle.done;
    } catch (err) {
      if (err.status === 410) return null;  // the version was too old at the start: list again
      throw err;
    }
    if (failure === "expired") return null;
    if (failure) throw failure;
    return result;
  }

  apply(ev) {
    const key = Collection.key(ev.object);
    if (ev.type === "ADDED" || ev.type === "MODIFIED") this.items.set(key, ev.object);
    else if (ev.type === "DELETED") this.items.delete(key);
    else return;  // BOOKMARK: only the resourceVersion moves
    this.onChange();
  }
}
