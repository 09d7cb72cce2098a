// What the commander console (console.js) and the field app (field.js) share
// at the browser edge: the server connection (Api, Feed), sound (Beeper), and
// the page around their content (Page): the header (language, sound,
// sign-out), the message banner, the connection state, the sign-in form and
// start-up. Each page's class extends Page and keeps its own views.
//
// Invariants:
//   * The token lives only in memory; the HttpOnly cookie is what persists.
//   * Nothing here runs at import: Node imports the pages' modules to test
//     their pure cores.

import { t, getLang, setLang, detectLang, onLangChange, applyI18n, missingKeys } from "./i18n.js";

// --- Storage and reconnect timing -------------------------------------------

function safeStorage() {
  try {
    return window.localStorage;
  } catch (_) {
    return null;
  }
}

/**
 * Reconnect delay in ms for the given attempt (0-based): exponential from
 * 0.5 s, capped at 10 s, with "equal jitter" (half fixed, half random) so a
 * room full of consoles does not reconnect in lock-step after a restart.
 */
export function backoffDelay(attempt, random = Math.random) {
  const base = 500;
  const cap = 10000;
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, Math.min(attempt, 20)));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

// --- HTTP -------------------------------------------------------------------

class Api {
  constructor() {
    this.token = null; // memory only
  }

  /** @returns {Promise<{status:number, body:any}>} status 0 = network failure */
  async request(method, path, payload) {
    const headers = { Accept: "application/json" };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        credentials: "same-origin",
        cache: "no-store",
        body: payload === undefined ? undefined : JSON.stringify(payload),
      });
    } catch (_) {
      return { status: 0, body: null };
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    return { status: resp.status, body };
  }
}

function errorMessage(body, fallbackKey) {
  const msg = body && body.error && typeof body.error === "object" ? body.error.message : null;
  return msg ? String(msg) : t(fallbackKey);
}

// --- WebSocket feed ----------------------------------------------------------

// The client's half of the heartbeat: browsers cannot send WebSocket pings,
// so it sends {"type":"ping"} and the server answers "pong". A socket that
// has said nothing for DEAD_AFTER_MS (two missed pongs) is dead even if the
// browser has not noticed (a half-open TCP connection after a network change):
// drop it and resume by seq.
export const PING_EVERY_MS = 15000;
export const DEAD_AFTER_MS = 35000;

/**
 * One reconnecting WebSocket. Owns its timers; the page tells it what to
 * say in hello (since/token) and hears every parsed frame.
 */
class Feed {
  constructor({ hello, onMessage, onState, onUnauthorized, bbox = null }) {
    this.hello = hello;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.bbox = bbox;
    this.beat = null;
    this.lastHeard = 0;
    this.pings = 0;
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.running = false;
    this.openedAt = 0;
    this.everOpen = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this.everOpen = false;
    this._connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    clearInterval(this.beat);
    this.beat = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(1000, "client stop");
      } catch (_) { /* already closed */ }
    }
    this.onState("offline");
  }

  /** Skip the wait (the browser came back online). */
  nudge() {
    if (!this.running || this.ws) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.attempt = 0;
    this._connect();
  }

  _url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws`;
  }

  _connect() {
    this.timer = null;
    if (!this.running) return;
    this.onState(this.everOpen || this.attempt > 0 ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this._url());
    } catch (_) {
      this._schedule();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.everOpen = true;
      this.openedAt = Date.now();
      ws.send(JSON.stringify(this.hello()));
      if (this.bbox) ws.send(JSON.stringify({ type: "subscribe", bbox: this.bbox }));
      this.lastHeard = Date.now();
      clearInterval(this.beat);
      this.beat = setInterval(() => this._heartbeat(ws), PING_EVERY_MS);
      this.onState("live");
    };
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (_) {
        return; // not JSON: nothing we can apply
      }
      this.attempt = 0;
      this.lastHeard = Date.now();
      if (msg && msg.type === "pong") return;
      this.onMessage(msg);
    };
    ws.onerror = () => { /* a close event always follows */ };
    ws.onclose = (e) => {
      if (ws !== this.ws) return; // a socket we already gave up on
      this.ws = null;
      clearInterval(this.beat);
      this.beat = null;
      if (!this.running) return;
      if (e.code === 4401) {
        this.running = false;
        this.onState("offline");
        this.onUnauthorized();
        return;
      }
      // A connection that lived a while was healthy: start the backoff over.
      if (this.openedAt && Date.now() - this.openedAt > 5000) this.attempt = 0;
      this.openedAt = 0;
      this._schedule();
    };
  }

  _heartbeat(ws) {
    if (ws !== this.ws) return;
    if (Date.now() - this.lastHeard > DEAD_AFTER_MS) {
      // Silent too long: give up on this socket without waiting for a close
      // handshake that may never come, and resume on a new one.
      clearInterval(this.beat);
      this.beat = null;
      this.ws = null;
      try {
        ws.close(4000, "heartbeat lost");
      } catch (_) { /* already closed */ }
      this._schedule();
      return;
    }
    try {
      this.pings += 1;
      ws.send(JSON.stringify({ type: "ping", id: this.pings }));
    } catch (_) { /* closing: onclose reconnects */ }
  }

  _schedule() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    const offline = typeof navigator !== "undefined" && navigator.onLine === false;
    this.onState(offline ? "offline" : "reconnecting", delay);
    this.timer = setTimeout(() => this._connect(), delay);
  }
}

// --- Sound --------------------------------------------------------------------

class Beeper {
  constructor(enabled) {
    this.enabled = enabled;
    this.ctx = null;
    this.last = 0;
  }

  /** Browsers start audio suspended until a user gesture; call from one. */
  unlock() {
    const ctx = this._context();
    if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
  }

  _context() {
    if (!this.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return null;
      try {
        this.ctx = new AC();
      } catch (_) {
        return null;
      }
    }
    return this.ctx;
  }

  beep() {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 1500) return; // a burst of incidents is one beep, not a siren
    this.last = now;
    const ctx = this._context();
    if (!ctx) return;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    try {
      const start = ctx.currentTime + 0.01;
      [[880, 0], [1175, 0.16]].forEach(([freq, offset]) => {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, start + offset);
        gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.14);
        osc.connect(gain).connect(ctx.destination);
        osc.start(start + offset);
        osc.stop(start + offset + 0.15);
      });
    } catch (_) { /* audio is a courtesy, never a failure */ }
  }
}

// --- The page around the content ----------------------------------------------

/**
 * A page's app: its header, banner, connection state, sign-in form and feed.
 * A page extends it and supplies
 *   setView(view), showLogin(message), relabel() (which calls relabelChrome()),
 *   bindPage() (its own controls, bound before the first relabel),
 *   start() (after the page is wired: timers, then the first request),
 *   onMessage(msg) (each feed frame),
 *   whoSignedIn(body, username) (after POST /api/login answered a token:
 *     who signed in, or null to refuse) and signedIn(who).
 */
export class Page {
  /**
   * @param {{state: object, soundKey: string, bbox?: number[]|null}} options
   *   state: the page's ConsoleState (its lastSeq resumes the feed);
   *   soundKey: where the sound toggle is remembered; bbox: the feed's area, if any.
   */
  constructor({ state, soundKey, bbox = null }) {
    this.api = new Api();
    this.state = state;
    this.view = "loading";
    this.connState = "offline";
    this.retryMs = null;
    this.soundKey = soundKey;

    const storage = safeStorage();
    this.beeper = new Beeper(!(storage && storage.getItem(soundKey) === "off"));
    this.feed = new Feed({
      hello: () => {
        const msg = { type: "hello" };
        if (this.api.token) msg.token = this.api.token;
        if (this.state.lastSeq !== null) msg.since = this.state.lastSeq;
        return msg;
      },
      onMessage: (msg) => this.onMessage(msg),
      onState: (s, retryMs) => this.setConnState(s, retryMs),
      onUnauthorized: () => this.showLogin(t("login.expired")),
      bbox,
    });
    this.$ = (id) => document.getElementById(id);
  }

  async boot() {
    setLang(detectLang(safeStorage(), navigator.languages || [navigator.language]), null);
    const gaps = missingKeys();
    if (gaps.zh.length || gaps.en.length) console.warn("i18n: missing keys", gaps);
    this.bindHeader();
    this.bindLogin();
    this.bindPage();
    onLangChange(() => this.relabel());
    this.relabel();
    window.addEventListener("online", () => this.feed.nudge());
    document.addEventListener("pointerdown", () => this.beeper.unlock(), { passive: true });
    await this.start();
  }

  /** The header's part of relabel(): every data-i18n text, the language menu, sound and connection. */
  relabelChrome() {
    applyI18n(document);
    this.$("lang-select").value = getLang();
    this.renderSound();
    this.renderConnState();
  }

  // ---- header ----

  bindHeader() {
    const lang = this.$("lang-select");
    lang.value = getLang();
    lang.addEventListener("change", () => setLang(lang.value, safeStorage()));
    this.$("logout-button").addEventListener("click", () => this.signOut());
    this.$("sound-toggle").addEventListener("click", () => {
      this.beeper.enabled = !this.beeper.enabled;
      const storage = safeStorage();
      try {
        if (storage) storage.setItem(this.soundKey, this.beeper.enabled ? "on" : "off");
      } catch (_) { /* remembered for this page only */ }
      if (this.beeper.enabled) this.beeper.unlock();
      this.renderSound();
    });
    this.$("message-dismiss").addEventListener("click", () => this.showMessage(null));
  }

  /** The sign-out button: stop listening, end the session on the server, back to the form. */
  async signOut() {
    this.feed.stop();
    await this.api.request("POST", "/api/logout", {});
    this.showLogin();
  }

  /** The sound toggle's tooltip (the field app says what its sound is for). */
  soundTitle() {
    return t("sound.title");
  }

  renderSound() {
    const btn = this.$("sound-toggle");
    btn.textContent = this.beeper.enabled ? t("sound.on") : t("sound.off");
    btn.setAttribute("aria-pressed", this.beeper.enabled ? "true" : "false");
    btn.title = this.soundTitle();
  }

  setConnState(state, retryMs) {
    this.connState = state;
    this.retryMs = retryMs ?? null;
    this.renderConnState();
  }

  renderConnState() {
    const node = this.$("connection-state");
    node.dataset.state = this.connState;
    const seq = this.state.lastSeq;
    node.dataset.seq = seq === null ? "" : String(seq);
    this.$("connection-text").textContent = t(`conn.${this.connState}`);
    this.$("last-seq").textContent = seq === null ? "" : t("conn.seq", { seq });
    node.title = this.retryMs !== null && this.connState !== "live"
      ? t("conn.retry_in", { s: (this.retryMs / 1000).toFixed(1) })
      : t("conn.label");
  }

  showMessage(text) {
    this.$("message-text").textContent = text || "";
    this.$("message-banner").hidden = !text;
  }

  // ---- sign-in ----

  /** The login view with `message` (or none), the password emptied, the first empty field focused. */
  showLoginForm(message) {
    this.setView("login");
    const err = this.$("login-error");
    err.hidden = !message;
    err.textContent = message || "";
    const pw = this.$("login-password");
    pw.value = "";
    const user = this.$("login-username");
    (user.value ? pw : user).focus();
  }

  bindLogin() {
    this.$("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const username = this.$("login-username").value.trim();
      const password = this.$("login-password").value;
      const button = this.$("login-submit");
      const err = this.$("login-error");
      if (!username || !password) {
        err.textContent = t("login.failed");
        err.hidden = false;
        return;
      }
      this.beeper.unlock(); // a click: the moment browsers allow audio
      button.disabled = true;
      button.textContent = t("login.busy");
      err.hidden = true;
      const resp = await this.api.request("POST", "/api/login", { username, password });
      let who = null;
      if (resp.status === 200 && resp.body && resp.body.token) {
        this.api.token = String(resp.body.token);
        who = await this.whoSignedIn(resp.body, username);
      }
      button.disabled = false;
      button.textContent = t("login.submit");
      this.$("login-password").value = "";
      if (who) {
        this.showMessage(null);
        this.signedIn(who);
        return;
      }
      this.api.token = null;
      err.textContent = resp.status === 0 ? t("login.network") : errorMessage(resp.body, "login.failed");
      err.hidden = false;
      this.$("login-password").focus();
    });
  }
}

/**
 * Start a page's app once the document is ready, if the page has `viewId`
 * (field.js imports console.js, whose page must not start there), as
 * window[handle]: a handle for debugging and browser tests (read-only use intended).
 */
export function startPage({ viewId, handle, name, create }) {
  if (typeof window === "undefined" || typeof document === "undefined") return;
  const start = () => {
    if (!document.getElementById(viewId)) return;
    if (typeof L === "undefined") {
      setLang(detectLang(safeStorage(), navigator.languages || [navigator.language]), null);
      document.body.textContent = t("msg.leaflet_missing");
      return;
    }
    const app = create();
    window[handle] = app;
    app.boot().catch((err) => console.error(`${name} boot failed`, err));
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}

export { Api, Feed, Beeper, safeStorage, errorMessage };
