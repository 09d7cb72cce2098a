// Field team app (/field): one unit's phone. Its current dispatch (the
// incident, where to go, how soon, what to beware of, what to collect), big
// buttons for the steps it may report, its tasks, and its position from the
// browser's geolocation.
//
// Two halves, as in console.js:
//   * a pure core (step rules, dispatch selection, the position throttle,
//     request bodies) that touches no DOM, exported so Node can test it;
//   * the browser edge (FieldApp), started only when field.html is the page.
//
// Invariants:
//   * Server strings never reach innerHTML: everything is built with
//     textContent; Leaflet gets elements or fixed class names only.
//   * Data (titles, ids, names, items) is rendered in its own element with
//     translate="no", apart from the translated words around it, so the page
//     says what is language and what is data (the language test relies on it).
//   * The dispatch shown is the server's: after every action and on every
//     dispatch event or snapshot the page asks GET /api/my/dispatches again.
//   * The token lives only in memory; the HttpOnly cookie is what persists.

import { t, label, getLang, SEVERITIES, UNIT_STATUSES } from "./i18n.js";
import {
  ConsoleState, el, fmtTime, fmtCoords, hasPosition,
  formatEta, formatDistance, formatCountdown, classToken, DISPATCH_ACTIVE, escapeHtml,
} from "./console.js";
import { Page, startPage, safeStorage, errorMessage, backoffDelay } from "./page.js";

// ---------------------------------------------------------------------------
// Pure core
// ---------------------------------------------------------------------------

/** Forward steps a field team may report, by dispatch status (dispatch/progress.py _FIELD_STEPS). */
export const FIELD_STEPS = {
  dispatched: ["acknowledged", "en_route", "on_scene", "declined"],
  acknowledged: ["en_route", "on_scene", "cleared"],
  en_route: ["on_scene", "cleared"],
  on_scene: ["cleared"],
};
/** Every step button, in the order the page shows them. */
export const STEP_ORDER = ["acknowledged", "en_route", "on_scene", "cleared", "declined"];

/**
 * The step buttons for a dispatch in `status`: [{step, primary, needsReason, confirm}].
 * The first forward step is the primary one (the natural next step); skipping
 * ahead stays possible because the server allows it (a crew that forgot "en
 * route" may still report "on scene"). Declining needs a reason; clearing ends
 * the dispatch for good, so it asks for a confirmation. Unknown or finished
 * statuses get no buttons.
 */
export function stepActions(status) {
  const allowed = Object.prototype.hasOwnProperty.call(FIELD_STEPS, status) ? FIELD_STEPS[status] : [];
  let primaryTaken = false;
  return STEP_ORDER.filter((s) => allowed.includes(s)).map((step) => {
    const primary = !primaryTaken && step !== "declined";
    if (primary) primaryTaken = true;
    return { step, primary, needsReason: step === "declined", confirm: step === "cleared" };
  });
}

export const MAX_REASON = 500; // command/dispatch_api.py MAX_TEXT

/** The body of POST /api/dispatches/{id}/status: {body} or {error} (an i18n key). */
export function stepRequest(step, reason) {
  if (!STEP_ORDER.includes(step)) return { error: "fieldapp.step_unknown" };
  if (step !== "declined") return { body: { status: step } };
  const text = String(reason ?? "").trim();
  if (!text) return { error: "action.reason_needed" };
  if (text.length > MAX_REASON) return { error: "fieldapp.reason_long" };
  return { body: { status: step, reason: text } };
}

function objects(value) {
  return Array.isArray(value) ? value.filter((x) => x && typeof x === "object") : [];
}

/**
 * From GET /api/my/dispatches?all=1: the dispatch the unit is working (at most
 * one: a unique index in the database; the newest should there ever be two)
 * and the newest finished one, each or null.
 */
export function pickDispatch(list) {
  const items = objects(list).slice().sort((a, b) => Number(b.id) - Number(a.id));
  return {
    current: items.find((d) => DISPATCH_ACTIVE.includes(d.status)) || null,
    last: items.find((d) => !DISPATCH_ACTIVE.includes(d.status)) || null,
  };
}

/** Whether to announce this dispatch: an order still waiting for acknowledgement, not announced yet. */
export function shouldAnnounce(dispatch, announced) {
  return Boolean(dispatch) && dispatch.status === "dispatched" && !announced.has(String(dispatch.id));
}

/** Great-circle distance in metres between {lat, lon} points (haversine), or null. */
export function distanceMeters(a, b) {
  if (!hasPosition(a) || !hasPosition(b)) return null;
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** When the unit is expected on scene (epoch ms): dispatch time plus the order's ETA, or null. */
export function arrivalAt(dispatch) {
  if (!dispatch || dispatch.eta_s === null || dispatch.eta_s === undefined) return null;
  const eta = Number(dispatch.eta_s);
  const created = Date.parse(dispatch.created_at);
  if (!Number.isFinite(eta) || eta < 0 || !Number.isFinite(created)) return null;
  return created + eta * 1000;
}

/** Where the order sends the unit, {lat, lon}, or null. */
export function destinationOf(dispatch) {
  const dest = dispatch && dispatch.order && dispatch.order.destination;
  if (!dest) return null;
  const point = { lat: Number(dest.lat), lon: Number(dest.lon) };
  return hasPosition(point) ? point : null;
}

/**
 * The order's route as Leaflet lines ([[lat, lon], …] each), when the order
 * carries one as a GeoJSON LineString or MultiLineString in `route`
 * (GeoJSON's [lon, lat] turned round); [] otherwise.
 */
export function routeLines(order) {
  const route = order && order.route;
  if (!route || typeof route !== "object") return [];
  const toLine = (coords) => (Array.isArray(coords) ? coords : [])
    .filter((c) => Array.isArray(c) && Number.isFinite(c[0]) && Number.isFinite(c[1]))
    .map((c) => [c[1], c[0]]);
  let lines = [];
  if (route.type === "LineString") lines = [toLine(route.coordinates)];
  else if (route.type === "MultiLineString" && Array.isArray(route.coordinates)) lines = route.coordinates.map(toLine);
  return lines.filter((line) => line.length >= 2);
}

/**
 * The supplies to collect: the order's pickups (depot name and place) with the
 * live status of their requisitions (dispatch.supplies: requested, committed,
 * delivered, released).
 * @returns {Array<{id, depot_id, depot_name, lat, lon, item, quantity, unit, status}>}
 */
export function supplyList(dispatch) {
  if (!dispatch) return [];
  const live = new Map(objects(dispatch.supplies).map((s) => [String(s.id), s]));
  const out = [];
  for (const s of objects(dispatch.order && dispatch.order.supplies)) {
    const id = String(s.requisition_id ?? "");
    const now = live.get(id);
    live.delete(id);
    out.push({
      id, depot_id: String(s.depot_id ?? ""), depot_name: String(s.depot_name ?? s.depot_id ?? ""),
      lat: Number(s.lat), lon: Number(s.lon), item: String(s.item ?? ""),
      quantity: Number(s.quantity), unit: String(s.unit ?? ""), status: now ? String(now.status) : "requested",
    });
  }
  // A requisition the order does not list (never expected): still shown, without a place.
  for (const s of live.values()) {
    out.push({
      id: String(s.id), depot_id: String(s.depot_id ?? ""), depot_name: String(s.depot_id ?? ""),
      lat: NaN, lon: NaN, item: String(s.item ?? ""), quantity: Number(s.quantity), unit: String(s.unit ?? ""),
      status: String(s.status ?? ""),
    });
  }
  return out;
}

/**
 * The body of POST /api/my/position from a GeolocationPosition, or null when
 * the fix is unusable. Speed and heading are sent only when the device knows
 * them (heading is NaN when standing still).
 */
export function positionBody(pos) {
  const c = pos && pos.coords;
  if (!c) return null;
  const lat = Number(c.latitude);
  const lon = Number(c.longitude);
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  const body = { lat, lon };
  const ms = Number(pos.timestamp);
  if (Number.isFinite(ms) && ms > 0) body.time = new Date(ms).toISOString();
  if (c.speed !== null && Number.isFinite(c.speed) && c.speed >= 0) body.speed = c.speed;
  if (c.heading !== null && Number.isFinite(c.heading) && c.heading >= 0 && c.heading < 360) body.heading = c.heading;
  return body;
}

/**
 * When to send the phone's position: at most one report per `minIntervalMs`
 * (the server accepts one per 2 s per unit: a margin keeps network jitter from
 * turning into refusals), only the newest fix (older ones waiting are
 * replaced), and a fix that barely moved waits for `heartbeatMs`, so a parked
 * unit still refreshes its position's age without a report every few seconds.
 */
export class PositionReporter {
  constructor({ minIntervalMs = 2500, heartbeatMs = 60000, minMoveM = 10 } = {}) {
    this.minIntervalMs = minIntervalMs;
    this.heartbeatMs = heartbeatMs;
    this.minMoveM = minMoveM;
    this.pending = null;
    this.inFlight = false;
    this.last = null;
    this.lastAt = -Infinity;
    this.notBefore = -Infinity;
  }

  /** A new fix (a positionBody); replaces any fix still waiting. */
  offer(body) {
    if (body) this.pending = body;
  }

  /** Milliseconds to wait before take() (0: now), or null when there is nothing to send. */
  wait(nowMs) {
    if (this.inFlight || !this.pending) return null;
    let at = Math.max(this.lastAt + this.minIntervalMs, this.notBefore);
    const moved = distanceMeters(this.last, this.pending);
    if (moved !== null && moved < this.minMoveM) at = Math.max(at, this.lastAt + this.heartbeatMs);
    return Math.max(0, at - nowMs);
  }

  /** The fix to send now; the reporter waits for settle() before offering another. */
  take() {
    const body = this.pending;
    this.pending = null;
    this.inFlight = body !== null;
    return body;
  }

  /**
   * What became of a report: "sent"; "retry" after `retryMs` (refused for
   * now: rate limit, network, server down), keeping it unless a newer fix
   * came meanwhile; or "drop" (the server will never take it).
   */
  settle(body, nowMs, outcome, retryMs = 0) {
    this.inFlight = false;
    if (outcome === "sent") {
      this.last = body;
      this.lastAt = nowMs;
    } else if (outcome === "retry") {
      if (!this.pending) this.pending = body;
      this.notBefore = nowMs + retryMs;
    }
  }
}

export const MAX_NOTE = 2000; // command/dispatch_api.py: note and result, at most 2000 characters

/**
 * The body of POST /api/tasks/{id} for a task action: "note" (text required),
 * "start", "done" or "failed" (a result required). {body} or {error} (an i18n key).
 */
export function taskRequest(action, text) {
  const value = String(text ?? "").trim();
  switch (action) {
    case "start":
      return { body: { status: "in_progress" } };
    case "note":
      if (!value) return { error: "fieldapp.note_needed" };
      if (value.length > MAX_NOTE) return { error: "fieldapp.text_long" };
      return { body: { note: value } };
    case "done":
    case "failed":
      if (!value) return { error: "tasks.need_result" };
      if (value.length > MAX_NOTE) return { error: "fieldapp.text_long" };
      return { body: { status: action, result: value } };
    default:
      return { error: "fieldapp.step_unknown" };
  }
}

/**
 * A translation template split at its {placeholders}: [{text} | {name}], so
 * the edge can put data in elements of its own between the translated words.
 */
export function splitTemplate(template) {
  const parts = [];
  const re = /\{(\w+)\}/g;
  let at = 0;
  let m;
  while ((m = re.exec(template)) !== null) {
    if (m.index > at) parts.push({ text: template.slice(at, m.index) });
    parts.push({ name: m[1] });
    at = m.index + m[0].length;
  }
  if (at < template.length) parts.push({ text: template.slice(at) });
  return parts;
}

/** Local "HH:MM" of an epoch-ms time (a time of day is what a crew on the road reads). */
export function clockTime(ms) {
  if (!Number.isFinite(ms)) return t("field.none");
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// ---------------------------------------------------------------------------
// Browser edge
// ---------------------------------------------------------------------------

const MAP_CENTER = [30.27, 120.15];
const MAP_ZOOM = 13;
const SOUND_KEY = "emergency-field.sound";
const VIBRATE_PATTERN = [300, 120, 300, 120, 300];
// Dispatch, incident and task reads triggered by feed events are coalesced to at most one per this.
const REFRESH_MS = 300;
// The incident detail (alarms, timeline, nearby places) is heavy for a phone and changes
// little for the crew: an escalating incident refetches it at most this often.
const DETAIL_REFRESH_MS = 5000;
// A phone fix older than this no longer beats the server's last known position on the map.
const FIX_FRESH_MS = 120000;

/** Data from the server, in an element of its own that is never translated. */
function data(value) {
  return el("span", { class: "data", translate: "no", text: value === null || value === undefined || value === "" ? t("field.none") : String(value) });
}

/** node.replaceChildren, skipping absent children (the DOM would print null as "null"). */
function fill(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

/** t(key) as nodes: string and number params become text, Node params (data) are inserted as they are. */
function tNodes(key, params = {}) {
  return splitTemplate(t(key)).map((part) => {
    if (part.text !== undefined) return document.createTextNode(part.text);
    const value = Object.prototype.hasOwnProperty.call(params, part.name) ? params[part.name] : `{${part.name}}`;
    return value instanceof Node ? value : document.createTextNode(String(value));
  });
}

function userActivated() {
  // Browsers refuse (and log) vibration and audio before the user has touched the page.
  return typeof navigator.userActivation === "undefined" || navigator.userActivation.hasBeenActive;
}

class FieldApp extends Page {
  constructor() {
    super({ state: new ConsoleState(), soundKey: SOUND_KEY });
    this.me = null; // {username, role, unit_id}

    this.current = null; // the active dispatch
    this.last = null; // the newest finished dispatch
    this.dispatchesLoaded = false;
    this.loadFailed = false; // the banner shows a failed dispatch list
    this.dispatchLoad = { running: false, again: false, gen: 0 };
    this.detail = null; // GET /api/incidents/{id} of the current dispatch
    this.tasks = null;
    this.tasksError = null;

    this.announced = new Set();
    this.announcements = []; // dispatch ids announced, in order (for tests and debugging)
    this.form = null; // {step}: the decline reason or clearing confirmation being asked for
    this.formError = null;
    this.reasonDraft = "";
    this.busy = null; // the step being sent
    this.actionError = null; // {dispatchId, text}
    this.taskForm = null; // {id, action}: a result being asked for
    this.taskBusy = null;
    this.taskErrors = new Map(); // task id -> message
    this.drafts = new Map(); // data-focus-key -> text typed so far

    this.geoState = "off";
    this.watchId = null;
    this.fix = null; // {lat, lon, at}
    this.reporter = new PositionReporter();
    this.positionTimer = null;
    this.positionSentAt = null;

    this.map = null;
    this.layers = null;
    this.ownMarker = null;
    this.destMarker = null;
    this.fitPending = true;
    this.fitHadOwn = false; // whether the last framing included the unit itself
    this.placesById = { hazards: new Map(), sites: new Map() };
    this.districts = new Map(); // id -> {name, name_zh}
    this.refreshTimers = new Map();
  }

  // ---- start-up (Page.boot) ----

  bindPage() {
    this.bindField();
  }

  async start() {
    setInterval(() => this.tick(), 1000);
    await this.probe(0);
  }

  /**
   * Who is signed in. Only asked when this browser signed in here before: an
   * anonymous probe would answer 401, which the browser logs as an error, and
   * a first visit is a sign-in anyway.
   */
  async probe(attempt) {
    const storage = safeStorage();
    let remembered = false;
    try {
      remembered = Boolean(storage && storage.getItem("emergency-field.signed-in"));
    } catch (_) { /* storage disabled: show the form */ }
    if (!remembered) {
      this.showLogin();
      return;
    }
    const resp = await this.api.request("GET", "/api/me");
    if (resp.status === 401) {
      this.showLogin();
      return;
    }
    if (resp.status !== 200 || !resp.body) {
      // Server unreachable: keep saying "connecting" and ask again.
      setTimeout(() => this.probe(attempt + 1), backoffDelay(attempt));
      return;
    }
    this.signedIn(resp.body);
  }

  rememberSignIn(yes) {
    const storage = safeStorage();
    try {
      if (storage && yes) storage.setItem("emergency-field.signed-in", "1");
      else if (storage) storage.removeItem("emergency-field.signed-in");
    } catch (_) { /* remembered for this page only */ }
  }

  signedIn(me) {
    this.me = {
      username: String(me.username ?? ""),
      role: String(me.role ?? ""),
      unit_id: me.unit_id === null || me.unit_id === undefined ? null : String(me.unit_id),
    };
    this.rememberSignIn(true);
    if (this.me.role !== "field" || !this.me.unit_id) {
      this.showWrongRole();
      return;
    }
    this.showField();
  }

  // ---- views ----

  setView(view) {
    this.view = view;
    document.body.dataset.view = view;
    this.$("loading-view").hidden = view !== "loading";
    this.$("login-view").hidden = view !== "login";
    this.$("wrong-role-view").hidden = view !== "wrong-role";
    this.$("field-view").hidden = view !== "field";
    this.$("logout-button").hidden = view !== "field" && view !== "wrong-role";
  }

  reset() {
    this.feed.stop();
    this.stopGeo();
    this.api.token = null;
    this.me = null;
    // Another unit may sign in next on this phone: forget what this one saw.
    this.state.clear();
    this.current = null;
    this.last = null;
    this.dispatchesLoaded = false;
    this.dispatchLoad.gen += 1;
    this.dispatchLoad.again = false;
    this.detail = null;
    this.tasks = null;
    this.form = null;
    this.actionError = null;
    this.taskForm = null;
    this.taskErrors.clear();
    this.drafts.clear();
    this.announced.clear();
    this.fitPending = true;
    for (const timer of this.refreshTimers.values()) clearTimeout(timer);
    this.refreshTimers.clear();
  }

  showLogin(message) {
    this.reset();
    this.rememberSignIn(false); // the session is over: the next visit starts at the form
    this.showLoginForm(message);
  }

  showWrongRole() {
    this.feed.stop();
    this.stopGeo();
    this.setView("wrong-role");
    this.renderWrongRole();
  }

  showField() {
    this.setView("field");
    this.ensureMap();
    this.map.invalidateSize();
    this.renderAll();
    this.feed.start();
    this.refreshDispatches();
    this.loadCityLayers();
    this.loadTiles();
    this.startGeo();
  }

  relabel() {
    this.relabelChrome();
    document.title = t("fieldapp.page_title");
    this.renderWrongRole();
    this.renderAll();
  }

  // ---- header and login (the rest is Page's) ----

  signOut() {
    this.stopGeo(); // no position report is sent while the session ends
    return super.signOut();
  }

  soundTitle() {
    return t("fieldapp.sound_title");
  }

  async whoSignedIn() {
    const who = await this.api.request("GET", "/api/me");
    return who.status === 200 && who.body ? who.body : null;
  }

  renderWrongRole() {
    const node = this.$("wrong-role-text");
    if (!node) return;
    node.replaceChildren(...(this.me
      ? tNodes("fieldapp.wrong_role", { user: data(this.me.username), role: label("role", this.me.role) })
      : []));
  }

  // ---- the feed ----

  onMessage(msg) {
    if (this.view !== "field") return;
    const changes = this.state.apply(msg);
    this.renderConnState();
    if (changes.error) {
      this.showMessage(t("msg.ws_error", { message: changes.error.message || t("msg.unknown_error") }));
    }
    if (changes.reset) {
      // A snapshot: the first picture, a resume too far behind, or (for a
      // field account) the scope widened by a new dispatch. Ask again.
      this.refreshDispatches();
      this.renderAll();
      return;
    }
    const unit = this.me && this.me.unit_id;
    const incidentId = this.current ? String(this.current.incident_id) : null;
    if (unit && changes.units.has(unit)) {
      this.renderUnitBar();
      this.drawOwn();
    }
    if (incidentId && changes.incidents.has(incidentId)) {
      this.renderDispatch();
      this.later("detail", () => this.loadDetail(), DETAIL_REFRESH_MS);
    }
    for (const { name, data: d } of changes.activity) {
      if (name.startsWith("dispatch.") && String(d.unit_id) === unit) this.later("dispatches", () => this.refreshDispatches());
      if (name.startsWith("task.") && incidentId && String(d.incident_id) === incidentId) this.later("tasks", () => this.loadTasks());
    }
  }

  /** Run fn once, `delay` ms after the first request, however many events ask for it meanwhile. */
  later(key, fn, delay = REFRESH_MS) {
    if (this.refreshTimers.has(key)) return;
    this.refreshTimers.set(key, setTimeout(() => {
      this.refreshTimers.delete(key);
      if (this.view === "field") fn();
    }, delay));
  }

  // ---- the dispatch ----

  async refreshDispatches() {
    const load = this.dispatchLoad;
    if (load.running) {
      load.again = true; // answered after the one in flight, so nothing is missed
      return;
    }
    load.running = true;
    const gen = load.gen;
    const resp = await this.api.request("GET", "/api/my/dispatches?all=1");
    load.running = false;
    if (gen !== load.gen || this.view !== "field") return;
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    if (resp.status === 200 && resp.body && Array.isArray(resp.body.dispatches)) {
      // A failure said so in the banner; the next success takes it back.
      if (this.loadFailed) this.showMessage(null);
      this.loadFailed = false;
      this.applyDispatches(pickDispatch(resp.body.dispatches));
    } else {
      this.loadFailed = true;
      this.showMessage(resp.status === 0 ? t("detail.network") : errorMessage(resp.body, "fieldapp.load_failed"));
    }
    if (load.again) {
      load.again = false;
      this.refreshDispatches();
    }
  }

  applyDispatches({ current, last }) {
    const before = this.current ? String(this.current.id) : null;
    const now = current ? String(current.id) : null;
    this.current = current;
    this.last = last;
    this.dispatchesLoaded = true;
    if (before !== now) {
      this.form = null;
      this.formError = null;
      this.reasonDraft = "";
      this.taskForm = null;
      this.taskErrors.clear();
      if (this.actionError && this.actionError.dispatchId !== now) this.actionError = null;
      this.detail = null;
      this.tasks = null;
      this.tasksError = null;
      this.fitPending = true;
      if (current) {
        this.loadDetail();
        this.loadTasks();
      }
    }
    if (shouldAnnounce(current, this.announced)) this.announce(current);
    else if (before !== null && now === null && last && String(last.id) === before && last.status === "cancelled") {
      this.alert(); // called back: the crew must notice that too
    }
    this.renderAll();
  }

  /** A new order: sound and vibration where the device and browser allow them. */
  announce(dispatch) {
    this.announced.add(String(dispatch.id));
    this.announcements.push(String(dispatch.id));
    this.alert();
  }

  alert() {
    if (!userActivated()) return;
    this.beeper.beep();
    if (typeof navigator.vibrate === "function") {
      try {
        navigator.vibrate(VIBRATE_PATTERN);
      } catch (_) { /* vibration is a courtesy */ }
    }
  }

  async loadDetail() {
    const dispatch = this.current;
    if (!dispatch) return;
    const resp = await this.api.request("GET", `/api/incidents/${encodeURIComponent(dispatch.incident_id)}`);
    if (!this.current || this.current.id !== dispatch.id) return;
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    // Without the detail the page still has the order's hazards; nothing else is lost.
    if (resp.status === 200 && resp.body && typeof resp.body === "object") this.detail = resp.body;
    this.renderDispatch();
    this.renderDetails();
    this.drawPlaces();
  }

  async loadTasks() {
    const dispatch = this.current;
    if (!dispatch) return;
    const resp = await this.api.request("GET", `/api/incidents/${encodeURIComponent(dispatch.incident_id)}/tasks`);
    if (!this.current || this.current.id !== dispatch.id) return;
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    if (resp.status === 200 && resp.body && Array.isArray(resp.body.tasks)) {
      this.tasks = objects(resp.body.tasks);
      this.tasksError = null;
    } else {
      this.tasksError = resp.status === 0 ? t("detail.network") : errorMessage(resp.body, "fieldapp.tasks_failed");
    }
    this.renderDetails();
  }

  async sendStep(step, reason) {
    const dispatch = this.current;
    if (!dispatch || this.busy) return;
    const req = stepRequest(step, reason);
    if (req.error) {
      this.formError = t(req.error);
      this.renderDispatch();
      return;
    }
    this.busy = step;
    this.formError = null;
    this.actionError = null;
    this.renderDispatch();
    const resp = await this.api.request("POST", `/api/dispatches/${encodeURIComponent(dispatch.id)}/status`, req.body);
    this.busy = null;
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    if (resp.status === 200 && resp.body && resp.body.dispatch) {
      this.form = null;
      this.reasonDraft = "";
      const updated = resp.body.dispatch;
      if (this.current && String(this.current.id) === String(updated.id)) {
        // Show the step at once; the list read below is the authority.
        this.applyDispatches(DISPATCH_ACTIVE.includes(updated.status)
          ? { current: updated, last: this.last }
          : { current: null, last: updated });
      }
    } else {
      // The server's reason (a 409 says why the step was refused), word for word.
      this.actionError = {
        dispatchId: String(dispatch.id),
        text: resp.status === 0 ? t("detail.network") : errorMessage(resp.body, "action.failed"),
      };
      this.renderDispatch();
    }
    this.refreshDispatches();
  }

  async taskAction(task, action, text) {
    const id = String(task.id);
    if (this.taskBusy) return;
    const req = taskRequest(action, text);
    if (req.error) {
      this.taskErrors.set(id, t(req.error));
      this.renderDetails();
      return;
    }
    this.taskBusy = id;
    this.taskErrors.delete(id);
    this.renderDetails();
    const resp = await this.api.request("POST", `/api/tasks/${encodeURIComponent(id)}`, req.body);
    this.taskBusy = null;
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    if (resp.status === 200 && resp.body && typeof resp.body === "object") {
      if (action === "note") this.drafts.delete(`note:${id}`);
      else if (action !== "start") this.drafts.delete(`result:${id}`);
      if (action !== "note") this.taskForm = null;
      if (Array.isArray(this.tasks)) this.tasks = this.tasks.map((x) => (String(x.id) === id ? resp.body : x));
    } else {
      this.taskErrors.set(id, resp.status === 0 ? t("detail.network") : errorMessage(resp.body, "action.failed"));
    }
    this.renderDetails();
  }

  // ---- rendering ----

  renderAll() {
    if (this.view !== "field") return;
    this.renderUnitBar();
    this.renderDispatch();
    this.renderDetails();
    this.drawDispatch();
  }

  /** Re-render a container, keeping the field being typed in focused (data-focus-key). */
  keepFocus(render) {
    const active = document.activeElement;
    const key = active && active.dataset ? active.dataset.focusKey : null;
    const start = key && typeof active.selectionStart === "number" ? active.selectionStart : null;
    render();
    if (!key) return;
    const again = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again && again !== document.activeElement) {
      again.focus();
      if (start !== null && typeof again.setSelectionRange === "function") again.setSelectionRange(start, start);
    }
  }

  unit() {
    return this.me && this.me.unit_id ? this.state.units.get(this.me.unit_id) || null : null;
  }

  renderUnitBar() {
    const unit = this.unit();
    const info = this.$("unit-info");
    info.dataset.unitId = this.me && this.me.unit_id ? this.me.unit_id : "";
    info.dataset.status = unit && unit.status ? String(unit.status) : "";
    const callsign = unit && unit.callsign ? String(unit.callsign) : (this.me && this.me.unit_id) || "";
    fill(info,
      el("span", { class: "unit-callsign", translate: "no", text: callsign }),
      unit && unit.status ? el("span", { class: `unit-status status-${classToken(unit.status, UNIT_STATUSES)}`, text: label("unit_status", unit.status) }) : null,
    );
    const geo = this.$("geo-state");
    geo.dataset.state = this.geoState;
    const sent = this.positionSentAt !== null && this.geoState === "on"
      ? t("fieldapp.geo_sent", { time: clockTime(this.positionSentAt) })
      : null;
    fill(geo,
      el("span", { class: "geo-dot", "aria-hidden": "true" }),
      el("span", { class: "geo-text", text: t(`fieldapp.geo.${this.geoState}`) }),
      sent ? el("span", { class: "geo-sent", text: sent }) : null,
    );
    // Only while the browser has not been asked: a tap is what lets it ask.
    this.$("geo-button").hidden = this.geoState !== "prompt";
  }

  incident() {
    if (!this.current) return null;
    const order = this.current.order && typeof this.current.order === "object" ? this.current.order : {};
    const live = this.state.incidents.get(String(this.current.incident_id));
    return { ...(order.incident || {}), ...(this.detail || {}), ...(live || {}) };
  }

  /** A district's name in the page's language when the city data has it, else its id. */
  districtName(id) {
    if (id === null || id === undefined || id === "") return null;
    const d = this.districts.get(String(id));
    if (!d) return String(id);
    return getLang() === "zh-CN" ? (d.name_zh || d.name || d.id) : (d.name || d.name_zh || d.id);
  }

  ownPosition() {
    if (this.fix && Date.now() - this.fix.at < FIX_FRESH_MS) return this.fix;
    const unit = this.unit();
    return unit && hasPosition(unit) ? { lat: unit.lat, lon: unit.lon } : null;
  }

  renderDispatch() {
    if (this.view !== "field") return;
    this.keepFocus(() => this._renderDispatch());
  }

  _renderDispatch() {
    const card = this.$("dispatch-card");
    const standby = this.$("standby");
    const d = this.current;
    standby.hidden = Boolean(d) || !this.dispatchesLoaded;
    card.hidden = !d;
    if (!d) {
      delete card.dataset.dispatchId;
      delete card.dataset.status;
      card.classList.remove("is-incoming");
      card.replaceChildren();
      this.renderStandby();
      return;
    }
    card.dataset.dispatchId = String(d.id);
    card.dataset.status = String(d.status);
    card.classList.toggle("is-incoming", d.status === "dispatched");
    const inc = this.incident();
    const sev = classToken(inc.severity, SEVERITIES);

    const head = el("div", { class: "dispatch-head" },
      d.status === "dispatched" ? el("p", { class: "incoming-label", text: t("fieldapp.incoming") }) : null,
      el("p", { class: "dispatch-no" }, ...tNodes("fieldapp.dispatch_no", { id: data(`#${d.id}`) })),
      el("span", { class: "dispatch-status", dataset: { status: String(d.status) }, text: label("dispatch_status", d.status) }));

    const title = el("h2", { class: "incident-title", translate: "no", text: String(inc.title ?? "") || t("field.none") });
    const dest = destinationOf(d);
    const fields = el("dl", { class: "incident-fields" });
    const row = (key, ...value) => fields.append(el("dt", { text: t(key) }), el("dd", {}, ...value));
    row("field.kind", label("kind", inc.kind));
    row("field.severity", el("span", { class: `sev-badge sev-${sev}`, text: label("severity", inc.severity) }));
    row("field.status", label("status", inc.status));
    row("field.district", data(this.districtName(inc.district)));
    row("field.location", dest ? fmtCoords(dest.lat, dest.lon) : fmtCoords(Number(inc.lat), Number(inc.lon)));

    const arrival = arrivalAt(d);
    const eta = el("div", { class: "eta" },
      el("span", { class: "eta-value", text: d.eta_s === null || d.eta_s === undefined ? t("fieldapp.no_eta") : formatEta(d.eta_s) }),
      arrival !== null ? el("span", { class: "eta-by", text: t("fieldapp.arrive_by", { time: clockTime(arrival) }) }) : null,
      el("span", { class: "to-go" }));
    const countdown = d.status === "dispatched" ? el("p", { class: "ack-countdown" }) : null;

    fill(card, head, title, eta, countdown, this.renderSteps(d), fields);
    this.tick();
  }

  renderStandby() {
    const node = this.$("standby-last");
    const last = this.last;
    if (!last) {
      node.hidden = true;
      node.replaceChildren();
      return;
    }
    const order = last.order && typeof last.order === "object" ? last.order : {};
    const title = order.incident && order.incident.title;
    node.hidden = false;
    node.dataset.dispatchId = String(last.id);
    node.dataset.status = String(last.status);
    node.replaceChildren(...tNodes("fieldapp.last_dispatch", {
      title: data(title ?? `#${last.incident_id}`),
      status: label("dispatch_status", last.status),
    }));
  }

  renderSteps(d) {
    const box = el("div", { class: "steps" });
    const actions = stepActions(d.status);
    if (this.form && actions.some((a) => a.step === this.form.step)) {
      box.append(this.renderStepForm(this.form.step));
    } else {
      const primary = el("div", { class: "steps-primary" });
      const others = el("div", { class: "steps-other" });
      for (const a of actions) {
        const busy = this.busy === a.step;
        const btn = el("button", {
          type: "button",
          class: `btn step-button${a.primary ? " is-primary" : ""}${a.step === "declined" ? " is-danger" : ""}`,
          dataset: { step: a.step },
          disabled: Boolean(this.busy),
          text: busy ? t("fieldapp.sending") : t(`fieldapp.step.${a.step}`),
        });
        btn.addEventListener("click", () => {
          this.beeper.unlock();
          if (a.needsReason || a.confirm) {
            this.form = { step: a.step };
            this.formError = null;
            this.actionError = null;
            this.renderDispatch();
            const focus = this.$("step-reason") || this.$("step-confirm");
            if (focus) focus.focus();
          } else {
            this.sendStep(a.step);
          }
        });
        (a.primary ? primary : others).append(btn);
      }
      box.append(primary);
      if (others.childElementCount) box.append(others);
    }
    if (this.actionError && this.actionError.dispatchId === String(d.id)) {
      box.append(el("p", { class: "action-error", role: "alert", text: this.actionError.text }));
    }
    return box;
  }

  renderStepForm(step) {
    const declining = step === "declined";
    const form = el("form", { id: "step-form", class: "step-form", dataset: { step }, novalidate: true });
    if (declining) {
      const input = el("textarea", {
        id: "step-reason", class: "step-reason", rows: "3", maxlength: String(MAX_REASON),
        placeholder: t("fieldapp.decline_placeholder"), dataset: { focusKey: "reason" },
      });
      input.value = this.reasonDraft;
      input.addEventListener("input", () => {
        this.reasonDraft = input.value;
        if (this.formError) {
          // The complaint was about an empty reason: typing answers it.
          this.formError = null;
          const shown = form.querySelector(".form-error");
          if (shown) shown.remove();
        }
      });
      form.append(el("label", { for: "step-reason", class: "step-form-label", text: t("fieldapp.decline_reason") }), input);
    } else {
      form.append(el("p", { class: "step-form-label", text: t("fieldapp.confirm_cleared") }));
    }
    const busy = this.busy === step;
    form.append(el("div", { class: "step-form-buttons" },
      el("button", {
        type: "submit", id: "step-confirm", class: `btn step-button ${declining ? "is-danger" : "is-primary"}`,
        disabled: Boolean(this.busy),
        text: busy ? t("fieldapp.sending") : t(declining ? "fieldapp.decline_submit" : "fieldapp.confirm_submit"),
      }),
      el("button", { type: "button", id: "step-back", class: "btn step-back", text: t("action.back") })));
    if (this.formError) form.append(el("p", { class: "form-error", role: "alert", text: this.formError }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendStep(step, declining ? this.reasonDraft : undefined);
    });
    form.querySelector("#step-back").addEventListener("click", () => {
      this.form = null;
      this.formError = null;
      this.renderDispatch();
    });
    return form;
  }

  renderDetails() {
    if (this.view !== "field") return;
    this.keepFocus(() => this._renderDetails());
  }

  _renderDetails() {
    const box = this.$("details");
    const d = this.current;
    box.hidden = !d;
    if (!d) {
      box.replaceChildren();
      return;
    }
    box.replaceChildren(this.renderSupplies(d), this.renderPlaces(d, "hazards"), this.renderPlaces(d, "sites"), this.renderTasks());
  }

  section(name, headingKey, ...content) {
    return el("section", { class: "detail-section", dataset: { section: name } },
      el("h3", { class: "section-heading", text: t(headingKey) }), ...content);
  }

  renderSupplies(d) {
    const supplies = supplyList(d);
    if (!supplies.length) return this.section("supplies", "fieldapp.supplies", el("p", { class: "empty", text: t("fieldapp.no_supplies") }));
    const ul = el("ul", { class: "supply-list" });
    for (const s of supplies) {
      ul.append(el("li", { class: "supply", dataset: { requisitionId: s.id, status: s.status } },
        el("span", { class: "supply-what" }, data(s.item), " ", data(`${Number.isFinite(s.quantity) ? s.quantity : ""} ${s.unit}`.trim())),
        el("span", { class: "supply-where" }, ...tNodes("fieldapp.depot", { depot: data(s.depot_name) })),
        el("span", { class: "supply-status", text: label("fieldapp.supply_status", s.status) })));
    }
    return this.section("supplies", "fieldapp.supplies", ul);
  }

  places(kind) {
    if (this.detail && Array.isArray(this.detail[kind])) return objects(this.detail[kind]);
    // The order carries the hazards known when it was made; sites come with the detail only.
    const order = this.current && this.current.order;
    return kind === "hazards" && order ? objects(order.hazards) : [];
  }

  renderPlaces(d, kind) {
    const list = this.places(kind);
    const heading = kind === "hazards" ? "detail.hazards" : "detail.sites";
    if (!list.length) return this.section(kind, heading, el("p", { class: "empty", text: t("detail.no_places") }));
    const ul = el("ul", { class: "place-list" });
    for (const p of list) {
      ul.append(el("li", { class: kind === "hazards" ? "hazard" : "site", dataset: { placeId: String(p.id ?? "") } },
        el("span", { class: "place-name", translate: "no", text: String(p.name ?? p.id ?? "") }),
        el("span", { class: "place-meta", text: t("detail.place_line", {
          kind: label(kind === "hazards" ? "hazard_kind" : "site_kind", p.kind), distance: formatDistance(p.distance_m),
        }) })));
    }
    return this.section(kind, heading, ul);
  }

  renderTasks() {
    if (this.tasksError) return this.section("tasks", "tasks.title", el("p", { class: "task-load-error", role: "alert", text: this.tasksError }));
    if (this.tasks === null) return this.section("tasks", "tasks.title", el("p", { class: "empty", text: t("detail.loading") }));
    if (!this.tasks.length) return this.section("tasks", "tasks.title", el("p", { class: "empty", text: t("fieldapp.no_tasks") }));
    const ul = el("ul", { class: "task-list" });
    for (const task of this.tasks) ul.append(this.renderTask(task));
    return this.section("tasks", "tasks.title", ul);
  }

  renderTask(task) {
    const id = String(task.id);
    const open = task.status === "open" || task.status === "in_progress";
    const li = el("li", { class: "task", dataset: { taskId: id, status: String(task.status) } },
      el("div", { class: "task-head" },
        el("span", { class: "task-title", translate: "no", text: String(task.title ?? "") }),
        el("span", { class: "task-status", text: label("task_status", task.status) })),
      open ? el("p", { class: "task-due", dataset: { due: String(task.due_at ?? "") } }) : null,
      task.result ? el("p", { class: "task-result" }, ...tNodes("tasks.result", { result: data(task.result) })) : null);
    const notes = objects(task.notes);
    if (notes.length) {
      const ol = el("ol", { class: "task-notes" });
      for (const n of notes) {
        ol.append(el("li", { class: "task-note" },
          el("span", { class: "note-time", text: fmtTime(n.time) }), " ",
          el("span", { class: "note-author", translate: "no", text: String(n.author ?? "") }), " ",
          el("span", { class: "note-text", translate: "no", text: String(n.note ?? "") })));
      }
      li.append(ol);
    }
    if (open) li.append(this.renderTaskControls(task));
    const error = this.taskErrors.get(id);
    if (error) li.append(el("p", { class: "task-error", role: "alert", text: error }));
    return li;
  }

  /** A text input remembered across re-renders (a feed event must not eat what is being typed). */
  draftInput(key, attrs) {
    const input = el("input", { type: "text", ...attrs, dataset: { focusKey: key } });
    input.value = this.drafts.get(key) || "";
    input.addEventListener("input", () => this.drafts.set(key, input.value));
    return input;
  }

  renderTaskControls(task) {
    const id = String(task.id);
    const busy = this.taskBusy !== null;
    const box = el("div", { class: "task-controls" });
    const noteKey = `note:${id}`;
    const note = this.draftInput(noteKey, { class: "task-note-input", maxlength: String(MAX_NOTE), placeholder: t("fieldapp.note_placeholder"), "aria-label": t("fieldapp.note_placeholder") });
    const add = el("button", { type: "submit", class: "btn task-note-add", disabled: busy, text: t("fieldapp.note_add") });
    const noteForm = el("form", { class: "task-note-form", novalidate: true }, note, add);
    noteForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.taskAction(task, "note", this.drafts.get(noteKey));
    });
    box.append(noteForm);

    if (this.taskForm && this.taskForm.id === id) {
      const action = this.taskForm.action;
      const resultKey = `result:${id}`;
      const input = this.draftInput(resultKey, { class: "task-result-input", maxlength: String(MAX_NOTE), placeholder: t("tasks.result_placeholder"), "aria-label": t("tasks.result_label") });
      const form = el("form", { class: "task-result-form", dataset: { action }, novalidate: true },
        el("label", { class: "task-result-label", text: t(action === "done" ? "fieldapp.task_done" : "fieldapp.task_failed") }),
        input,
        el("div", { class: "task-buttons" },
          el("button", { type: "submit", class: "btn task-result-submit is-primary", disabled: busy, text: t("fieldapp.task_report") }),
          el("button", { type: "button", class: "btn task-result-back", text: t("action.back") })));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        this.taskAction(task, action, this.drafts.get(resultKey));
      });
      form.querySelector(".task-result-back").addEventListener("click", () => {
        this.taskForm = null;
        this.taskErrors.delete(id);
        this.renderDetails();
      });
      box.append(form);
      return box;
    }
    const buttons = el("div", { class: "task-buttons" });
    if (task.status === "open") {
      const start = el("button", { type: "button", class: "btn task-start", disabled: busy, text: t("fieldapp.task_start") });
      start.addEventListener("click", () => this.taskAction(task, "start"));
      buttons.append(start);
    }
    for (const action of ["done", "failed"]) {
      const btn = el("button", { type: "button", class: `btn task-${action}`, disabled: busy, text: t(`fieldapp.task_${action}`) });
      btn.addEventListener("click", () => {
        this.taskForm = { id, action };
        this.taskErrors.delete(id);
        this.renderDetails();
        const input = document.querySelector(`[data-focus-key="result:${CSS.escape(id)}"]`);
        if (input) input.focus();
      });
      buttons.append(btn);
    }
    box.append(buttons);
    return box;
  }

  /** Once a second: countdowns and the distance still to go, without re-rendering. */
  tick() {
    if (this.view !== "field") return;
    const now = Date.now();
    const d = this.current;
    const countdown = document.querySelector("#dispatch-card .ack-countdown");
    if (countdown && d) {
      const deadline = Date.parse(d.ack_deadline);
      countdown.textContent = !Number.isFinite(deadline) ? ""
        : deadline > now ? t("dispatches.ack_in", { t: formatCountdown(deadline - now) }) : t("dispatches.ack_passed");
      countdown.classList.toggle("is-overdue", Number.isFinite(deadline) && deadline <= now);
    }
    const toGo = document.querySelector("#dispatch-card .to-go");
    if (toGo) {
      const metres = distanceMeters(this.ownPosition(), destinationOf(d));
      toGo.textContent = metres === null ? "" : t("fieldapp.to_go", { distance: formatDistance(metres) });
    }
    for (const node of document.querySelectorAll("#details .task-due")) {
      const due = Date.parse(node.dataset.due);
      if (!Number.isFinite(due)) continue;
      node.textContent = due >= now ? t("tasks.due_in", { t: formatCountdown(due - now) }) : t("tasks.late", { t: formatCountdown(now - due) });
      node.classList.toggle("is-overdue", due < now);
    }
  }

  // ---- map ----

  bindField() {
    this.$("geo-button").addEventListener("click", () => this.watchGeo());
    this.$("map-fit").addEventListener("click", () => {
      this.fitPending = true;
      this.drawDispatch();
    });
  }

  ensureMap() {
    if (this.map) return;
    const map = L.map("field-map", { center: MAP_CENTER, zoom: MAP_ZOOM, zoomControl: true });
    this.map = map;
    map.attributionControl.setPrefix(false);
    map.createPane("roads").style.zIndex = "260";
    map.getPane("roads").style.pointerEvents = "none";
    this.roadRenderer = L.canvas({ pane: "roads", padding: 0.2 });
    this.layers = {
      roads: L.featureGroup().addTo(map),
      places: L.featureGroup().addTo(map),
      route: L.featureGroup().addTo(map),
      pickups: L.featureGroup().addTo(map),
      dispatch: L.featureGroup().addTo(map),
    };
  }

  /** The centre's raster tiles under our own basemap, when GET /api/config names a tile server. */
  async loadTiles() {
    const resp = await this.api.request("GET", "/api/config");
    if (this.view !== "field" || !this.map || this.tileLayer) return;
    const url = resp.status === 200 && resp.body && typeof resp.body.tile_url === "string" ? resp.body.tile_url.trim() : "";
    if (!url) return; // the offline basemap (our roads) is the default
    this.tileLayer = L.tileLayer(url, {
      maxZoom: 19,
      // Leaflet puts attributions in as HTML; the setting is plain text.
      attribution: escapeHtml(resp.body.tile_attribution || ""),
    }).addTo(this.map);
  }

  /** The offline basemap (roads) and the city's hazards and sites, whose shapes the nearby lists point to. */
  async loadCityLayers() {
    const [roads, hazards, sites, districts] = await Promise.all(
      ["roads", "hazards", "sites", "districts"].map((name) => this.api.request("GET", `/api/${name}`)));
    if (this.view !== "field") return;
    const failed = [];
    if (districts.status === 200 && districts.body && Array.isArray(districts.body.districts)) {
      this.districts = new Map(objects(districts.body.districts).map((d) => [String(d.id), d]));
      this.renderDispatch();
    }
    if (roads.status === 200 && roads.body && Array.isArray(roads.body.roads)) this.drawRoads(roads.body.roads);
    else failed.push("roads");
    for (const [name, resp] of [["hazards", hazards], ["sites", sites]]) {
      if (resp.status === 200 && resp.body && Array.isArray(resp.body[name])) {
        this.placesById[name] = new Map(objects(resp.body[name]).map((p) => [String(p.id), p]));
      } else {
        failed.push(name);
      }
    }
    if (failed.length) this.showMessage(failed.map((name) => t("msg.load_failed", { what: t(`msg.what.${name}`) })).join(" "));
    this.drawPlaces();
  }

  drawRoads(list) {
    this.layers.roads.clearLayers();
    const features = objects(list).filter((r) => r.geometry).map((r) => ({
      type: "Feature", geometry: r.geometry, properties: { speed: Number(r.speed_kmh) },
    }));
    try {
      L.geoJSON({ type: "FeatureCollection", features }, {
        pane: "roads",
        renderer: this.roadRenderer,
        interactive: false,
        style: (f) => ({ color: f.properties.speed >= 60 ? "#7a838f" : "#a3abb5", weight: f.properties.speed >= 60 ? 3 : 1.4, opacity: 0.9 }),
      }).addTo(this.layers.roads);
    } catch (err) {
      console.warn("skipping bad road geometry", err);
    }
  }

  drawPlaces() {
    if (!this.layers) return;
    this.layers.places.clearLayers();
    if (!this.current) return;
    for (const kind of ["hazards", "sites"]) {
      for (const near of this.places(kind)) {
        const place = this.placesById[kind].get(String(near.id));
        if (!place || !place.geometry) continue;
        const color = kind === "hazards" ? "#c2410c" : "#1d4ed8";
        try {
          const shape = L.geoJSON(place.geometry, {
            style: { color, weight: 2, fillOpacity: 0.15 },
            pointToLayer: (_f, latlng) => L.circleMarker(latlng, { radius: 7, color, weight: 2, fillColor: color, fillOpacity: 0.5 }),
          });
          shape.bindTooltip(() => el("span", { translate: "no", text: String(place.name ?? place.id) }));
          shape.addTo(this.layers.places);
          shape.eachLayer((layer) => {
            const node = layer.getElement ? layer.getElement() : null;
            if (node) node.dataset[kind === "hazards" ? "mapHazardId" : "mapSiteId"] = String(place.id);
          });
        } catch (err) {
          console.warn("skipping bad place geometry", err);
        }
      }
    }
  }

  marker(latlng, className, titleKey, params, dataset) {
    const marker = L.marker(latlng, {
      icon: L.divIcon({ className, iconSize: [22, 22] }),
      keyboard: false,
      title: t(titleKey, params),
    });
    marker.addTo(this.layers.dispatch);
    const node = marker.getElement();
    if (node && dataset) Object.assign(node.dataset, dataset);
    return marker;
  }

  drawOwn() {
    if (!this.layers) return;
    const own = this.ownPosition();
    if (this.ownMarker) {
      this.ownMarker.remove();
      this.ownMarker = null;
    }
    if (own) {
      this.ownMarker = this.marker([own.lat, own.lon], "own-marker", "fieldapp.marker_own", {}, { unitId: this.me ? this.me.unit_id : "" });
      this.ownMarker.setZIndexOffset(1000);
    }
    // Frame again when the unit's own position turns up after a dispatch was framed without it.
    if (this.fitPending || (own && !this.fitHadOwn && this.current)) this.fit();
    this.tick();
  }

  drawDispatch() {
    if (!this.layers) return;
    this.layers.pickups.clearLayers();
    this.layers.route.clearLayers();
    if (this.destMarker) {
      this.destMarker.remove();
      this.destMarker = null;
    }
    const d = this.current;
    const dest = destinationOf(d);
    if (dest) this.destMarker = this.marker([dest.lat, dest.lon], "dest-marker", "fieldapp.marker_dest", {}, { dispatchId: String(d.id) });
    for (const s of supplyList(d)) {
      if (!hasPosition(s)) continue;
      const m = L.marker([s.lat, s.lon], {
        icon: L.divIcon({ className: "pickup-marker", iconSize: [18, 18] }),
        keyboard: false,
        title: t("fieldapp.marker_pickup", { depot: s.depot_name }),
      }).addTo(this.layers.pickups);
      const node = m.getElement();
      if (node) node.dataset.depotId = s.depot_id;
    }
    for (const line of routeLines(d && d.order)) {
      L.polyline(line, { color: "#2563eb", weight: 5, opacity: 0.8 }).addTo(this.layers.route);
    }
    this.drawPlaces();
    this.drawOwn();
  }

  /** Frame the unit, its destination and its pickups (once per new dispatch, or on request). */
  fit() {
    const points = [];
    const own = this.ownPosition();
    if (own) points.push([own.lat, own.lon]);
    const dest = destinationOf(this.current);
    if (dest) points.push([dest.lat, dest.lon]);
    for (const s of supplyList(this.current)) if (hasPosition(s)) points.push([s.lat, s.lon]);
    if (!points.length) return;
    this.fitPending = false;
    this.fitHadOwn = Boolean(own);
    if (points.length === 1) this.map.setView(points[0], Math.max(this.map.getZoom(), 15));
    // Clear of the zoom buttons (top left) and "Show all" (bottom right).
    else this.map.fitBounds(L.latLngBounds(points), { paddingTopLeft: [56, 32], paddingBottomRight: [32, 64], maxZoom: 16 });
  }

  // ---- geolocation ----

  setGeo(state) {
    this.geoState = state;
    if (this.view === "field") this.renderUnitBar();
  }

  startGeo() {
    if (!navigator.geolocation) {
      this.setGeo("unsupported");
      return;
    }
    const onPermission = (state) => {
      if (this.view !== "field") return;
      if (state === "granted") this.watchGeo();
      else if (state === "denied") {
        this.stopGeo();
        this.setGeo("denied");
      } else if (this.watchId === null) this.setGeo("prompt");
    };
    // Ask the browser first: a permission prompt at page load, without a tap, is refused by many browsers.
    if (navigator.permissions && typeof navigator.permissions.query === "function") {
      navigator.permissions.query({ name: "geolocation" }).then((status) => {
        onPermission(status.state);
        status.onchange = () => onPermission(status.state);
      }, () => onPermission("prompt"));
    } else {
      onPermission("prompt");
    }
  }

  watchGeo() {
    if (this.watchId !== null || !navigator.geolocation || this.view !== "field") return;
    this.setGeo("asking");
    this.watchId = navigator.geolocation.watchPosition(
      (pos) => this.onFix(pos),
      (err) => this.onGeoError(err),
      { enableHighAccuracy: true, maximumAge: 10000, timeout: 60000 },
    );
  }

  stopGeo() {
    if (this.watchId !== null && navigator.geolocation) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
    clearTimeout(this.positionTimer);
    this.positionTimer = null;
    this.reporter = new PositionReporter();
    this.fix = null;
    this.positionSentAt = null;
    this.geoState = "off";
  }

  onFix(pos) {
    if (this.view !== "field") return;
    const body = positionBody(pos);
    if (!body) return;
    this.fix = { lat: body.lat, lon: body.lon, at: Date.now() };
    this.reporter.offer(body);
    this.setGeo("on");
    this.drawOwn();
    this.schedulePosition();
  }

  onGeoError(err) {
    if (err && err.code === 1) {
      // Permission refused: the watch is over; the browser's settings are the way back.
      this.stopGeo();
      this.setGeo("denied");
    } else {
      this.setGeo("unavailable"); // no fix yet or a timeout: the watch keeps trying
    }
  }

  schedulePosition() {
    clearTimeout(this.positionTimer);
    this.positionTimer = null;
    const wait = this.reporter.wait(Date.now());
    if (wait === null) return;
    this.positionTimer = setTimeout(() => this.sendPosition(), wait);
  }

  async sendPosition() {
    this.positionTimer = null;
    const body = this.reporter.take();
    if (!body) return;
    const reporter = this.reporter;
    const resp = await this.api.request("POST", "/api/my/position", body);
    if (reporter !== this.reporter) return; // signed out meanwhile
    const now = Date.now();
    if (resp.status === 200) {
      reporter.settle(body, now, "sent");
      this.positionSentAt = now;
      this.renderUnitBar();
    } else if (resp.status === 401) {
      reporter.settle(body, now, "drop");
      this.showLogin(t("login.expired"));
      return;
    } else if (resp.status === 400 || resp.status === 403) {
      reporter.settle(body, now, "drop"); // this fix will never be taken; the next one may
      console.warn("position refused", resp.body);
    } else {
      // 429 (too soon), a network failure or the server restarting: try the newest fix later.
      reporter.settle(body, now, "retry", resp.status === 429 ? 2500 : 5000);
    }
    this.schedulePosition();
  }
}

// ---------------------------------------------------------------------------

startPage({ viewId: "field-view", handle: "emergencyField", name: "field app", create: () => new FieldApp() });
