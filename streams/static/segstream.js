/*! segstream.js: send shop events to a segstream collector. No dependencies.
 *
 *   <script src="https://collector.example/v1/segstream.js" data-write-key="KEY"></script>
 *   segstream.page({page_type: "product", sku: "A-7", category: "shoes", price: 59.9});
 *   segstream.cart("add", {sku: "A-7", category: "shoes", quantity: 1, unit_price: 59.9});
 *   segstream.purchase({order_id: "o-1", lines: [...], total: 59.9, currency: "EUR"});
 *   segstream.identify("c-42");   // after login: links this browser's history to c-42
 *
 * Events are queued and sent in batches (every flushInterval ms, or at once when flushAt
 * events wait); what is left when the page is hidden goes with navigator.sendBeacon.
 * sendBeacon cannot set headers, so the write key travels as ?writeKey= everywhere, and
 * bodies are sent as text/plain (no CORS preflight). Failed sends are retried with
 * backoff; each event carries its own event_id, so a retry is never counted twice.
 */
(function (w, d) {
  "use strict";
  if (w.segstream && w.segstream.version) return;

  var script = d.currentScript;
  var cfg = {
    endpoint: script && script.src ? new URL(script.src, w.location.href).origin : w.location.origin,
    writeKey: (script && script.getAttribute("data-write-key")) || "",
    flushAt: 20,
    flushInterval: 1000,
    maxBatch: 100,
    maxQueue: 1000,
    maxBytes: 60000 // fetch keepalive and sendBeacon bodies are limited to 64 KiB
  };
  var queue = [];
  var busy = false;
  var timer = null;
  var failures = 0;
  var stats = { requests: 0, accepted: 0, rejected: 0, failed: 0, beacons: 0, identified: 0,
                lastStatus: null, lastResults: [] };

  function store(key, value) {
    try {
      if (value === undefined) return w.localStorage.getItem(key);
      if (value === null) w.localStorage.removeItem(key);
      else w.localStorage.setItem(key, value);
    } catch (e) { /* storage blocked: ids live as long as the page */ }
    return value;
  }

  function uuid() {
    var c = w.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); });
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  var anonymousId = store("segstream.aid") || store("segstream.aid", uuid());
  var customerId = store("segstream.cid") || null;
  var sessionId = uuid();

  function device() {
    var ua = w.navigator.userAgent || "";
    if (/iPad|Tablet/i.test(ua)) return "tablet";
    if (/Mobi|Android|iPhone/i.test(ua)) return "mobile";
    return "desktop";
  }

  function url(path) {
    return cfg.endpoint + path + "?writeKey=" + encodeURIComponent(cfg.writeKey);
  }

  function track(type, fields) {
    var e = { event_id: uuid(), type: type, occurred_at: new Date().toISOString(),
              anonymous_id: anonymousId, session_id: sessionId, channel: "web", device: device() };
    if (customerId) e.customer_id = customerId;
    for (var k in fields) if (Object.prototype.hasOwnProperty.call(fields, k)) e[k] = fields[k];
    queue.push({ kind: "event", body: e });
    if (queue.length > cfg.maxQueue) queue.splice(0, queue.length - cfg.maxQueue);
    schedule();
    return e.event_id;
  }

  function waiting() {
    var n = 0;
    for (var i = 0; i < queue.length; i++) if (queue[i].kind === "event") n++;
    return n;
  }

  function schedule(delay) {
    if (busy) return;
    if (delay === undefined && waiting() >= cfg.flushAt) delay = 0;
    if (timer !== null) {
      if (delay !== 0) return;
      clearTimeout(timer);
    }
    timer = setTimeout(function () { timer = null; flush(); },
                       delay === undefined ? cfg.flushInterval : delay);
  }

  // The next request from the head of the queue: an identify, or consecutive events.
  function take() {
    if (!queue.length) return null;
    if (queue[0].kind === "identify") return { path: "/v1/identify", items: queue.splice(0, 1) };
    var n = 0;
    var bytes = 0;
    while (n < queue.length && n < cfg.maxBatch && queue[n].kind === "event") {
      var size = JSON.stringify(queue[n].body).length + 1;
      if (n > 0 && bytes + size > cfg.maxBytes) break;
      bytes += size;
      n++;
    }
    return { path: "/v1/events", items: queue.splice(0, n) };
  }

  function payload(req) {
    if (req.path === "/v1/identify") return JSON.stringify(req.items[0].body);
    return JSON.stringify({ batch: req.items.map(function (i) { return i.body; }),
                            sent_at: new Date().toISOString() });
  }

  function settle(req, status, body) {
    stats.lastStatus = status;
    var retry = status === 0 || status === 408 || status === 429 || status >= 500;
    if (retry) {
      queue.unshift.apply(queue, req.items); // same event ids: a retry is not counted twice
      failures++;
      stats.failed += req.items.length;
      return Math.min(30000, 500 * Math.pow(2, failures));
    }
    failures = 0;
    if (req.path === "/v1/identify") {
      if (status < 300) stats.identified++;
    } else if (body && body.results) {
      stats.lastResults = body.results;
      stats.accepted += body.accepted || 0;
      stats.rejected += body.rejected || 0;
    } else {
      stats.rejected += req.items.length; // refused as a whole (4xx): dropped
    }
    return 0;
  }

  function flush() {
    if (busy) return Promise.resolve();
    var req = take();
    if (!req) return Promise.resolve();
    busy = true;
    stats.requests++;
    return w.fetch(url(req.path), {
      method: "POST", body: payload(req), keepalive: true, credentials: "omit",
      headers: { "Content-Type": "text/plain;charset=UTF-8" }
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (b) {
        return settle(req, r.status, b);
      });
    }, function () {
      return settle(req, 0, null);
    }).then(function (backoff) {
      busy = false;
      if (queue.length) schedule(backoff || (queue[0].kind === "identify" ||
                                             waiting() >= cfg.flushAt ? 0 : undefined));
    });
  }

  // Page hidden or left: whatever waits goes now, with sendBeacon (it outlives the page).
  function beacon() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (!w.navigator.sendBeacon) { flush(); return; }
    var req;
    while ((req = take())) {
      if (w.navigator.sendBeacon(url(req.path), payload(req))) {
        stats.beacons++;
      } else {
        queue.unshift.apply(queue, req.items);
        break;
      }
    }
  }

  d.addEventListener("visibilitychange", function () {
    if (d.visibilityState === "hidden") beacon();
  });
  w.addEventListener("pagehide", beacon);

  w.segstream = {
    version: "1",
    init: function (options) {
      for (var k in options) if (Object.prototype.hasOwnProperty.call(options, k)) cfg[k] = options[k];
      return this;
    },
    page: function (fields) {
      var f = fields || {};
      if (!f.page_type) f.page_type = "other";
      return track("browse", f);
    },
    cart: function (action, item) {
      var f = { action: action };
      for (var k in item || {}) f[k] = item[k];
      return track("cart", f);
    },
    purchase: function (order) { return track("purchase", order || {}); },
    refund: function (refund) { return track("refund", refund || {}); },
    profile: function (attributes) { return track("profile", { attributes: attributes || {} }); },
    track: track,
    identify: function (id) {
      customerId = String(id);
      store("segstream.cid", customerId);
      queue.push({ kind: "identify", body: { anonymous_id: anonymousId, customer_id: customerId } });
      schedule(0);
    },
    reset: function () { // on logout: a new anonymous visitor from here on
      customerId = null;
      store("segstream.cid", null);
      anonymousId = store("segstream.aid", uuid());
    },
    flush: flush,
    anonymousId: function () { return anonymousId; },
    customerId: function () { return customerId; },
    pending: function () { return queue.length + (busy ? 1 : 0); },
    stats: stats
  };
})(window, document);
