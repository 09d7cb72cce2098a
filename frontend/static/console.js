// Commander console: login, live map, incident queue, and the incident detail
// where a commander acts (dispatch, call back, status, tasks); beside the map,
// the units board, the depots board, the KPI dashboard and (administrators) the
// rejected messages, one view at a time under a tab bar.
//
// Two halves:
//   * a pure core (ConsoleState, sorting, backoff, formatting) that touches no DOM,
//     no socket and no clock of its own, exported so Node can test it;
//   * the browser edge (map, DOM, the views), started by boot() only when a
//     document exists; the header, sign-in, WebSocket, fetch and audio it
//     shares with the field app are page.js's.
//
// Invariants:
//   * Server strings never reach innerHTML: the DOM is built with textContent,
//     and Leaflet (whose string contents are HTML) only ever gets elements or
//     our own escaped strings.
//   * An event is applied at most once: anything with seq <= lastSeq is dropped,
//     so a replay that overlaps what we saw changes nothing.
//   * The token lives only in memory; the HttpOnly cookie is what persists.

import {
  t, label, has, getLang, KINDS, SEVERITIES, ACTIVE_STATUSES, TERMINAL_STATUSES, UNIT_STATUSES, LANGS,
} from "./i18n.js";
import { Page, startPage, errorMessage } from "./page.js";

// ---------------------------------------------------------------------------
// Pure core
// ---------------------------------------------------------------------------

export const SEVERITY_RANK = { Extreme: 0, Severe: 1, Moderate: 2, Minor: 3, Unknown: 4 };

export const SEVERITY_COLOR = {
  Extreme: "#7f0000",
  Severe: "#d7191c",
  Moderate: "#f07c00",
  Minor: "#e6c200",
  Unknown: "#8a8f98",
};

export const UNIT_STATUS_COLOR = {
  available: "#1a9850",
  dispatched: "#2166ac",
  en_route: "#2166ac",
  on_scene: "#7b3294",
  returning: "#1b9e9e",
  out_of_service: "#8a8f98",
};

const TERMINAL = new Set(TERMINAL_STATUSES);

/** Whether an incident in this status has left the queue for good. */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

function timeOf(value) {
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : 0;
}

/**
 * Queue order: severity (Extreme first), then most recently updated, then
 * the higher id (a stable tie-break so equal items never swap on re-render).
 */
export function compareIncidents(a, b) {
  const ra = SEVERITY_RANK[a.severity] ?? 5;
  const rb = SEVERITY_RANK[b.severity] ?? 5;
  if (ra !== rb) return ra - rb;
  const ua = timeOf(a.updated_at);
  const ub = timeOf(b.updated_at);
  if (ua !== ub) return ub - ua;
  const ia = String(a.id);
  const ib = String(b.id);
  if (ia.length !== ib.length) return ib.length - ia.length; // numeric ids as strings
  return ib < ia ? -1 : ib > ia ? 1 : 0;
}

// --- Priority and the dispatch SLA (pure) ----------------------------------------

/**
 * Statuses in which an incident still waits for its first dispatch. The server
 * moves an incident from new or confirmed to responding in the transaction that
 * creates its first dispatch (command/dispatch_store.py), so these statuses are
 * exactly "nobody sent yet" for an incident the commander has not moved by hand.
 */
export const AWAITING_DISPATCH = ["new", "confirmed"];

/**
 * Where an incident stands against the dispatch target (docs/kpis.md: opening
 * to first dispatch within `targetS`, NFPA 1221's 60 s by default).
 * @returns {{state: "none"|"due"|"breached", leftMs: number|null}}
 *   none: not waiting for a dispatch, or no target or clock to judge by;
 *   due: `leftMs` until the target; breached: past it (`leftMs` < 0). Exactly at the
 *   target is still within it, as in the KPI report.
 */
export function slaState(inc, nowMs, targetS) {
  const none = { state: "none", leftMs: null };
  if (!inc || !AWAITING_DISPATCH.includes(inc.status)) return none;
  const target = Number(targetS);
  if (!(target > 0) || !Number.isFinite(nowMs)) return none;
  const opened = timeOf(inc.opened_at);
  if (!opened) return none;
  const leftMs = opened + target * 1000 - nowMs;
  return { state: leftMs >= 0 ? "due" : "breached", leftMs };
}

/**
 * Queue order with the SLA clock:
 *   1. severity band, where an incident past its dispatch target counts one band
 *      more severe (it "rises": a Moderate fire nobody was sent to after 60 s sits
 *      with the Severe ones);
 *   2. within a band, incidents past the target first;
 *   3. then those still waiting for a dispatch before those already being worked;
 *   4. waiting ones longest-waiting first (closest to, or furthest past, the target);
 *      the others as compareIncidents (most recently updated first, then id).
 */
export function comparePriority(a, b, nowMs, targetS) {
  const sa = slaState(a, nowMs, targetS);
  const sb = slaState(b, nowMs, targetS);
  const band = (inc, s) => (SEVERITY_RANK[inc.severity] ?? 5) - (s.state === "breached" ? 1 : 0);
  const ba = band(a, sa);
  const bb = band(b, sb);
  if (ba !== bb) return ba - bb;
  const late = (s) => (s.state === "breached" ? 0 : 1);
  if (late(sa) !== late(sb)) return late(sa) - late(sb);
  const idle = (s) => (s.state === "none" ? 1 : 0);
  if (idle(sa) !== idle(sb)) return idle(sa) - idle(sb);
  if (sa.state !== "none") {
    const oa = timeOf(a.opened_at);
    const ob = timeOf(b.opened_at);
    if (oa !== ob) return oa - ob;
  }
  return compareIncidents(a, b);
}

/**
 * The incidents the queue shows, in order.
 * @param {Iterable<Object>} incidents
 * @param {{kind?: string, status?: string, district?: string}} filters empty string = any
 * @param {{now: number, dispatchS: number}|null} [sla] the clock and the dispatch target;
 *   without them (the server's settings not loaded yet) the order is compareIncidents.
 */
export function queueOf(incidents, filters = {}, sla = null) {
  const out = [];
  for (const inc of incidents) {
    if (matchesFilters(inc, filters)) out.push(inc);
  }
  out.sort(sla && sla.dispatchS > 0 ? (a, b) => comparePriority(a, b, sla.now, sla.dispatchS) : compareIncidents);
  return out;
}

export function matchesFilters(inc, filters = {}) {
  if (!inc || isTerminal(inc.status)) return false;
  if (filters.kind && inc.kind !== filters.kind) return false;
  if (filters.status && inc.status !== filters.status) return false;
  if (filters.district && String(inc.district ?? "") !== filters.district) return false;
  return true;
}

/** Human age of something that started at `fromMs`, as of `nowMs`. */
export function formatAge(fromMs, nowMs) {
  if (!Number.isFinite(fromMs) || fromMs <= 0) return t("field.none");
  const s = Math.max(0, Math.floor((nowMs - fromMs) / 1000));
  if (s < 10) return t("age.now");
  if (s < 60) return t("age.s", { n: s });
  const m = Math.floor(s / 60);
  if (m < 60) return t("age.m", { n: m });
  const h = Math.floor(m / 60);
  if (h < 24) return t("age.h", { n: h, m: m % 60 });
  return t("age.d", { n: Math.floor(h / 24), h: h % 24 });
}

/** Whole minutes to arrive (rounded up, at least 1), or null when not reachable. */
export function etaMinutes(etaS) {
  if (etaS === null || etaS === undefined || etaS === "") return null;
  const s = Number(etaS);
  if (!Number.isFinite(s) || s < 0) return null;
  return Math.max(1, Math.ceil(s / 60));
}

/** "ETA n min" or "unreachable". */
export function formatEta(etaS) {
  const m = etaMinutes(etaS);
  return m === null ? t("rec.unreachable") : t("rec.eta", { n: m });
}

/** Metres as "350 m" or "1.2 km". */
export function formatDistance(metres) {
  const m = Number(metres);
  if (metres === null || metres === undefined || !Number.isFinite(m)) return t("field.none");
  if (m < 1000) return t("dist.m", { n: Math.round(m) });
  return t("dist.km", { n: (m / 1000).toFixed(m < 10000 ? 1 : 0) });
}

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for the few places (Leaflet control labels) that take HTML. */
export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/** Only known vocabulary values become CSS class names. */
export function classToken(value, allowed) {
  return allowed.includes(value) ? value : "unknown";
}

function idOf(obj) {
  if (!obj || obj.id === undefined || obj.id === null || obj.id === "") return null;
  return String(obj.id);
}

/** Copy only the fields that are present (an event may carry a subset). */
function mergePresent(target, data) {
  for (const [k, v] of Object.entries(data)) {
    if (v !== undefined) target[k] = v;
  }
  return target;
}

/**
 * The console's picture of the world, driven only by server messages.
 *
 * apply(msg) returns what changed, so the view redraws only that:
 *   { reset, incidents:Set<id>, units:Set<id>, opened:[id], updated:[id], activity:[{name, data}], error, applied }
 * (updated: incidents named by incident.updated or incident.closed events;
 *  activity: dispatch.* and task.* events, which the open incident detail merges)
 */
export class ConsoleState {
  constructor() {
    this.incidents = new Map();
    this.units = new Map();
    this.lastSeq = null;
  }

  clear() {
    this.incidents.clear();
    this.units.clear();
    this.lastSeq = null;
  }

  /** Fill from REST before the socket has spoken (no seq: the snapshot replaces it). */
  seed(incidents) {
    if (this.lastSeq !== null || this.incidents.size > 0) return false;
    for (const inc of incidents || []) {
      const id = idOf(inc);
      if (id !== null && !isTerminal(inc.status)) this.incidents.set(id, { ...inc, id });
    }
    return true;
  }

  apply(msg) {
    const changes = {
      reset: false, incidents: new Set(), units: new Set(), opened: [], updated: [], activity: [], error: null, applied: 0,
    };
    if (!msg || typeof msg !== "object") return changes;
    switch (msg.type) {
      case "snapshot":
        this._snapshot(msg, changes);
        break;
      case "event":
        this._event(msg, changes);
        break;
      case "batch":
        for (const ev of Array.isArray(msg.events) ? msg.events : []) this._event(ev, changes);
        break;
      case "error":
        changes.error = (msg.error && typeof msg.error === "object") ? msg.error : { message: String(msg.error ?? "") };
        break;
      default:
        break; // unknown frame types are ignored, so the server can add some.
    }
    return changes;
  }

  _snapshot(msg, changes) {
    this.incidents.clear();
    this.units.clear();
    for (const inc of Array.isArray(msg.incidents) ? msg.incidents : []) {
      const id = idOf(inc);
      if (id !== null && !isTerminal(inc.status)) this.incidents.set(id, { ...inc, id });
    }
    for (const unit of Array.isArray(msg.units) ? msg.units : []) {
      const id = idOf(unit);
      if (id !== null) this.units.set(id, { ...unit, id });
    }
    if (typeof msg.seq === "number") this.lastSeq = msg.seq;
    changes.reset = true;
    changes.applied += 1;
  }

  _event(ev, changes) {
    if (!ev || typeof ev !== "object") return;
    if (typeof ev.seq === "number") {
      if (this.lastSeq !== null && ev.seq <= this.lastSeq) return; // already seen
      this.lastSeq = ev.seq;
    }
    const data = ev.data && typeof ev.data === "object" ? ev.data : null;
    const id = idOf(data);
    if (id === null) return;
    changes.applied += 1;
    switch (ev.name) {
      case "incident.opened":
      case "incident.updated":
      case "incident.closed": {
        const merged = mergePresent({ ...(this.incidents.get(id) || {}) }, data);
        merged.id = id;
        if (ev.name === "incident.closed" && !isTerminal(merged.status)) merged.status = "closed";
        // Terminal incidents leave memory too: a wall screen runs for weeks.
        if (isTerminal(merged.status)) this.incidents.delete(id);
        else this.incidents.set(id, merged);
        changes.incidents.add(id);
        if (ev.name === "incident.opened" && !isTerminal(merged.status)) changes.opened.push(id);
        else if (ev.name !== "incident.opened") changes.updated.push(id);
        break;
      }
      case "unit.moved":
      case "unit.status": {
        const merged = mergePresent({ ...(this.units.get(id) || {}) }, data);
        merged.id = id;
        this.units.set(id, merged);
        changes.units.add(id);
        break;
      }
      default:
        if (typeof ev.name === "string" && (ev.name.startsWith("dispatch.") || ev.name.startsWith("task."))) {
          changes.activity.push({ name: ev.name, data }); // the incident detail shows these
          if (ev.name.startsWith("dispatch.")) this._unitDispatch(data, changes);
        } else {
          changes.applied -= 1; // sensor.* and others: not shown.
        }
        break;
    }
  }

  /**
   * Keep a unit's `dispatch` ({id, incident_id, status} or null, as the snapshot
   * gives it) in step with dispatch events. Events come in seq order after the
   * snapshot they follow, so the last one about a unit's active dispatch is its
   * state; an event about an older dispatch that ended never clears a newer one.
   */
  _unitDispatch(data, changes) {
    if (data.unit_id === undefined || data.unit_id === null || typeof data.status !== "string") return;
    const unitId = String(data.unit_id);
    const unit = this.units.get(unitId);
    if (!unit) return; // outside this console's view
    const current = unit.dispatch && typeof unit.dispatch === "object" ? unit.dispatch : null;
    let next = current;
    if (DISPATCH_ACTIVE.includes(data.status)) {
      next = { id: data.id, incident_id: data.incident_id ?? (current ? current.incident_id : null), status: data.status };
    } else if (current && String(current.id) === String(data.id)) {
      next = null;
    }
    if (next === current) return;
    this.units.set(unitId, { ...unit, dispatch: next });
    changes.units.add(unitId);
  }
}

// --- Acting on an incident (pure) ----------------------------------------------

/** Roles that may dispatch, change an incident's status and set tasks (command/dispatch_api.py). */
export const ACTOR_ROLES = ["admin", "commander", "dispatcher"];

/** Dispatch states in which the unit is still working the incident (dispatch/progress.py ACTIVE). */
export const DISPATCH_ACTIVE = ["dispatched", "acknowledged", "en_route", "on_scene"];
export const DISPATCH_STATUSES = [...DISPATCH_ACTIVE, "cleared", "declined", "cancelled"];
// A dispatch in one of these never got (or will never get) its unit there.
const DISPATCH_GONE = new Set(["declined", "cancelled"]);

export const TASK_STATUSES = ["open", "in_progress", "done", "failed", "cancelled"];
const TASK_OPEN = new Set(["open", "in_progress"]);

// The lifecycle a commander drives: command/incidents.py _NEXT, plus reopen from an ended state.
const LIFECYCLE_NEXT = {
  new: ["confirmed", "responding", "false_alarm", "cancelled"],
  confirmed: ["responding", "contained", "resolved", "false_alarm", "cancelled"],
  responding: ["contained", "resolved", "false_alarm", "cancelled"],
  contained: ["responding", "resolved"],
  resolved: ["closed"],
  closed: [],
  false_alarm: [],
  cancelled: [],
};
const NEEDS_REASON = new Set(["false_alarm", "cancelled", "reopen"]);
/** Every lifecycle button, in the order the panel shows them. */
export const LIFECYCLE_ACTIONS = [
  "confirmed", "responding", "contained", "resolved", "closed", "false_alarm", "cancelled", "reopen",
];

/**
 * The status buttons for an incident in `status`: [{action, needsReason}], in display order.
 * `action` is what POST /api/incidents/{id}/status takes; an unknown status gets none.
 */
export function lifecycleActions(status) {
  const next = new Set(Object.prototype.hasOwnProperty.call(LIFECYCLE_NEXT, status) ? LIFECYCLE_NEXT[status] : []);
  if (isTerminal(status)) next.add("reopen");
  return LIFECYCLE_ACTIONS.filter((a) => next.has(a)).map((action) => ({ action, needsReason: NEEDS_REASON.has(action) }));
}

export function isActiveDispatch(dispatch) {
  return Boolean(dispatch) && DISPATCH_ACTIVE.includes(dispatch.status);
}

export function isOpenTask(task) {
  return Boolean(task) && TASK_OPEN.has(task.status);
}

function list(value) {
  return Array.isArray(value) ? value.filter((x) => x && typeof x === "object") : [];
}

/**
 * What "Dispatch recommended" would send, one choice per checkbox:
 *   { units: [{key, id, callsign, type, capability, eta_s, late, covered, picked}],
 *     supplies: [{key, depot_id, name, item, unit, quantity, eta_s, covered, picked}] }
 *
 * `picked` is the default tick. The recommendation plans the whole need as if
 * nothing had been sent yet, so what the incident's dispatches already cover
 * starts unticked (`covered`): units that went or are going (not declined or
 * called back) count against their capability's need, supplies on their way or
 * delivered (not released) against their item's. A second click therefore does
 * not send the plan twice; the commander can still tick more.
 */
export function dispatchChoices(rec, dispatches = []) {
  const units = [];
  const supplies = [];
  if (!rec || typeof rec !== "object") return { units, supplies };
  const going = list(dispatches).filter((d) => !DISPATCH_GONE.has(d.status));
  const covering = new Map();
  const carried = new Map();
  for (const d of going) {
    if (d.capability) covering.set(String(d.capability), (covering.get(String(d.capability)) || 0) + 1);
    for (const s of list(d.supplies)) {
      if (s.status === "released" || !s.item) continue;
      carried.set(String(s.item), (carried.get(String(s.item)) || 0) + (Number(s.quantity) || 0));
    }
  }
  const seen = new Set();
  for (const a of list(rec.assignments)) {
    const capability = a.capability === null || a.capability === undefined || a.capability === "" ? null : String(a.capability);
    let open = Math.max(0, (Number(a.needed) || 0) - (capability ? covering.get(capability) || 0 : 0));
    for (const u of list(a.chosen)) {
      if (u.id === null || u.id === undefined || u.id === "") continue;
      const id = String(u.id);
      if (seen.has(`unit:${id}`)) continue; // the planner chooses a unit once; be safe anyway
      seen.add(`unit:${id}`);
      const wanted = open > 0;
      if (wanted) open -= 1;
      units.push({
        key: `unit:${id}`, id, callsign: String(u.callsign ?? id), type: u.type ?? null, capability,
        eta_s: u.eta_s ?? null, late: Boolean(u.late), covered: !wanted, picked: wanted,
      });
    }
  }
  for (const s of list(rec.supplies)) {
    if (!s.item) continue;
    const item = String(s.item);
    let open = Math.max(0, (Number(s.needed) || 0) - (carried.get(item) || 0));
    for (const src of list(s.sources)) {
      const quantity = Math.floor(Number(src.quantity));
      if (!src.depot_id || !(quantity >= 1)) continue;
      const depot = String(src.depot_id);
      const key = `supply:${depot}:${item}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const take = Math.min(quantity, open);
      const wanted = take >= 1;
      if (wanted) open -= take;
      supplies.push({
        key, depot_id: depot, name: String(src.name ?? depot), item, unit: String(s.unit ?? ""),
        quantity: wanted ? take : quantity, eta_s: src.eta_s ?? null, covered: !wanted, picked: wanted,
      });
    }
  }
  return { units, supplies };
}

/**
 * The body of POST /api/incidents/{id}/dispatches for the ticked choices.
 * `picks` (key -> boolean) overrides each choice's default tick. Units go with
 * the capability they fill; every supply is carried by the first unit. With no
 * unit ticked there is nothing to carry supplies, so none are sent either
 * (the server needs at least one unit).
 * @returns {{units: Array<string|{id: string, capability: string}>, supplies: Array<Object>}}
 */
export function dispatchBody(choices, picks = new Map()) {
  const ticked = (c) => (picks.has(c.key) ? Boolean(picks.get(c.key)) : c.picked);
  const chosen = (choices && Array.isArray(choices.units) ? choices.units : []).filter(ticked);
  const units = chosen.map((u) => (u.capability ? { id: u.id, capability: u.capability } : u.id));
  const supplies = [];
  if (chosen.length) {
    for (const s of (Array.isArray(choices.supplies) ? choices.supplies : []).filter(ticked)) {
      supplies.push({ depot_id: s.depot_id, item: s.item, quantity: s.quantity, unit_id: chosen[0].id });
    }
  }
  return { units, supplies };
}

/** The body that sends an overdue dispatch's offered next-best unit. */
export function offerBody(offer) {
  const id = String(offer.unit_id);
  return { units: [offer.capability ? { id, capability: String(offer.capability) } : id] };
}

/** A copy of `items` with `data` merged into the item of the same id (or appended). */
export function upsertById(items, data) {
  const id = idOf(data);
  const out = Array.isArray(items) ? items.slice() : [];
  if (id === null) return out;
  const i = out.findIndex((x) => x && String(x.id) === id);
  if (i >= 0) out[i] = mergePresent({ ...out[i] }, data);
  else out.push({ ...data });
  return out;
}

/**
 * The next-best unit offered for each overdue dispatch (dispatch id -> offer or
 * null), from the timeline: GET /api/incidents/{id} lists dispatches without
 * it, and only the dispatch.overdue event carries it.
 */
export function offersFromTimeline(timeline) {
  const offers = new Map();
  for (const e of list(timeline)) {
    if (e.action !== "dispatch.overdue" || !e.detail || typeof e.detail !== "object") continue;
    const id = e.detail.dispatch_id;
    if (id === null || id === undefined) continue;
    const offer = e.detail.offer;
    offers.set(String(id), offer && typeof offer === "object" && offer.unit_id ? offer : null);
  }
  return offers;
}

/** Which vocabulary a timeline entry's from/to belong to (for their labels). */
export function timelineGroup(action) {
  if (action === "opened" || action === "status" || action === "reopen") return "status";
  if (action === "dispatch.status") return "dispatch_status";
  if (action === "task") return "task_status";
  return null;
}

/** A time span as "m:ss" or "h:mm:ss" (whole seconds, rounded up). */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil((Number(ms) || 0) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const p2 = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${p2(m)}:${p2(s)}` : `${m}:${p2(s)}`;
}

export const MAX_DUE_MINUTES = 30 * 24 * 60; // the server's 30 days

/**
 * Check the add-task form: { body } for POST /api/incidents/{id}/tasks, or
 * { error } with the i18n key of what is wrong.
 */
export function taskRequest({ title, dueMinutes, owner } = {}) {
  const text = String(title ?? "").trim();
  if (!text) return { error: "tasks.need_title" };
  if (text.length > 200) return { error: "tasks.title_long" };
  const raw = String(dueMinutes ?? "").trim();
  const minutes = raw === "" ? NaN : Number(raw);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > MAX_DUE_MINUTES) return { error: "tasks.bad_due" };
  const body = { title: text, due_in_s: Math.max(1, Math.round(minutes * 60)) };
  const unit = String(owner ?? "").trim();
  if (unit) body.owner_unit = unit;
  return { body };
}

// --- Boards and the dashboard (pure) ---------------------------------------------

/** The console's views, in nav order; "dead-letters" only for administrators. */
export const TABS = ["map", "units", "depots", "dashboard", "dead-letters"];

/** The view named by a location hash ("#units"), or "map". */
export function tabFromHash(hash, allowed = TABS) {
  const name = String(hash ?? "").replace(/^#/, "");
  return allowed.includes(name) ? name : "map";
}

/**
 * The UTC date "YYYY-MM-DD" of an instant: the planner judges expiry by the
 * server's UTC date (dispatch/postgis.py stock_near), so the board does too.
 */
export function utcDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Stock levels, worst first (the order the depots board lists items in). */
export const STOCK_LEVELS = ["expired", "out", "low", "ok"];

/**
 * How a depot's stock of one item stands:
 *   expired: its expires_on is today or earlier (the planner sends only stock that
 *     expires after today, so it is as good as none);
 *   out: nothing left;
 *   low: below the item's low-stock line (`minimum`, from GET /api/config: the
 *     most any single response plan up to Severe asks for);
 *   ok: otherwise, including any quantity of an item no plan asks for.
 * @param {{quantity: number, expires_on?: string|null}} entry
 * @param {number|undefined|null} minimum
 * @param {string} today "YYYY-MM-DD" (utcDate)
 */
export function stockLevel(entry, minimum, today) {
  const expires = entry && typeof entry.expires_on === "string" ? entry.expires_on.slice(0, 10) : "";
  if (expires && today && expires <= today) return "expired";
  const quantity = Number(entry && entry.quantity);
  if (!Number.isFinite(quantity) || quantity <= 0) return "out";
  const min = Number(minimum);
  if (minimum !== null && minimum !== undefined && Number.isFinite(min) && quantity < min) return "low";
  return "ok";
}

/**
 * A depot's stock with each item's level and line, worst first (then by item),
 * and how many items need attention.
 * @returns {{items: Array<Object>, warnings: number}}
 */
export function depotStock(depot, minimums, today) {
  const lines = minimums && typeof minimums === "object" ? minimums : {};
  const items = list(depot && depot.stock).map((s) => {
    const minimum = Object.prototype.hasOwnProperty.call(lines, s.item) ? Number(lines[s.item]) : null;
    return { ...s, minimum, level: stockLevel(s, minimum, today) };
  });
  items.sort((a, b) => (STOCK_LEVELS.indexOf(a.level) - STOCK_LEVELS.indexOf(b.level))
    || String(a.item).localeCompare(String(b.item)));
  return { items, warnings: items.filter((s) => s.level !== "ok").length };
}

/**
 * An axis from 0 to a "nice" maximum at or above `maxValue`, in 1-2-2.5-5 steps
 * (counts: whole steps of 1-2-5 only), with at most `ticks` steps.
 * An empty or non-positive maximum gives the axis 0..1, so an empty chart still draws.
 * @returns {{max: number, step: number, ticks: number[]}}
 */
export function niceScale(maxValue, { ticks = 5, integer = false } = {}) {
  const value = Number(maxValue);
  if (!Number.isFinite(value) || value <= 0) return { max: 1, step: 1, ticks: [0, 1] };
  const rough = value / Math.max(1, ticks);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const steps = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = steps.find((n) => rough <= n * magnitude + 1e-12) * magnitude;
  if (integer) step = Math.max(1, Math.round(step));
  // Rounding away float noise (0.1 + 0.2): tick labels are read by people.
  const clean = (n) => Number(n.toPrecision(12));
  step = clean(step);
  const max = clean(Math.ceil(value / step - 1e-9) * step);
  const out = [];
  for (let i = 0; clean(i * step) <= max; i += 1) out.push(clean(i * step));
  return { max, step, ticks: out };
}

/** Length of a bar for `value` on an axis 0..`max` drawn `length` long; clipped to the axis. */
export function scaleLength(value, max, length) {
  const v = Number(value);
  if (!Number.isFinite(v) || v <= 0 || !(max > 0)) return 0;
  return Math.min(length, (v / max) * length);
}

/** The SLA targets of GET /api/stats, in the order the dashboard shows them. */
export const SLA_TARGETS = ["dispatch", "turnout", "travel"];

/**
 * Rows of the "response times against targets" chart from a GET /api/stats body:
 * per target its interval's p50 and p90 over the period, the target, and the
 * SLA figures (fraction within, goal met, breaching incident ids).
 */
export function responseRows(stats) {
  const sla = stats && stats.sla && typeof stats.sla === "object" ? stats.sla : {};
  const metrics = stats && stats.overall && stats.overall.metrics ? stats.overall.metrics : {};
  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  return SLA_TARGETS.filter((key) => sla[key] && typeof sla[key] === "object").map((key) => {
    const c = sla[key];
    const m = metrics[c.metric] || {};
    return {
      key,
      metric: String(c.metric ?? ""),
      target: num(c.target_s),
      p50: num(m.p50),
      p90: num(m.p90),
      count: Number(m.count) || 0,
      measured: Number(c.measured) || 0,
      within: Number(c.within) || 0,
      fraction: num(c.fraction),
      met: c.met === true ? true : c.met === false ? false : null,
      breaches: Array.isArray(c.breaches) ? c.breaches : [],
    };
  });
}

/**
 * Bars of a "count by group" chart from GET /api/stats groups: largest first
 * (ties by key; the no-district group, key null, last among equals), at most
 * `limit` bars, the rest summed into one {key: null, others: n} bar.
 */
export function countRows(groups, limit = 12) {
  const rows = list(groups).map((g) => ({ key: g.key === null || g.key === undefined ? null : String(g.key), count: Number(g.count) || 0 }));
  rows.sort((a, b) => (b.count - a.count)
    || ((a.key === null) - (b.key === null))
    || String(a.key).localeCompare(String(b.key)));
  if (rows.length <= limit) return rows;
  const kept = rows.slice(0, Math.max(1, limit - 1));
  const rest = rows.slice(kept.length);
  kept.push({ key: null, others: rest.length, count: rest.reduce((n, r) => n + r.count, 0) });
  return kept;
}

/** GET /api/stats for the last `days` days before `nowMs`, grouped by `group`. */
export function statsPath(days, nowMs, group) {
  const from = new Date(nowMs - days * 86400000).toISOString();
  return `/api/stats?group=${encodeURIComponent(group)}&from=${encodeURIComponent(from)}`;
}

/**
 * A label cut to about `maxUnits` Latin-letter widths (a CJK character counts
 * two), with "…" when cut, for SVG text, which does not wrap or ellipsize.
 */
export function fitLabel(text, maxUnits) {
  const s = String(text ?? "");
  let units = 0;
  let out = "";
  for (const ch of s) {
    const w = /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/.test(ch) ? 2 : 1;
    if (units + w > maxUnits) return `${out.replace(/\s+$/, "")}…`;
    units += w;
    out += ch;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Browser edge
// ---------------------------------------------------------------------------

const MAP_CENTER = [30.27, 120.15];
const MAP_ZOOM = 12;
const QUEUE_LIMIT = 1000; // more than this many rows stops being a queue anyway
const NEW_HIGHLIGHT_MS = 10000;
const SOUND_KEY = "emergency-console.sound";
// The detail panel refetches at most this often when its incident keeps changing.
const DETAIL_REFRESH_MS = 2000;
const DETAIL_ALARMS = 5; // the last few alarms shown in the detail panel
const TIMELINE_ENTRIES = 50; // the newest timeline entries shown in the detail panel
// Where console.css stacks map over queue; below it the map is too small for open controls.
const NARROW_SCREEN = "(max-width: 800px)";
// How often a visible board refetches on its own. Rejected messages arrive at any
// time and an administrator watches for them; depots and KPIs change slowly (depots
// also refetch shortly after a dispatch event, when supplies move).
const DEAD_LETTERS_EVERY_MS = 30000;
const DEPOTS_EVERY_MS = 60000;
const DASHBOARD_EVERY_MS = 60000;
const DEPOTS_AFTER_DISPATCH_MS = 2000;
const DEAD_LETTERS_LIMIT = 200;
const PAYLOAD_SHOWN = 300; // characters of a rejected payload shown in the table (up to 64 KiB each)
const DASHBOARD_PERIODS = [1, 7, 30, 90]; // days; 30 is GET /api/stats's own default
const DEFAULT_PERIOD = 30;
// Used until GET /api/config answers: the server's defaults (command/settings.py).
const DEFAULT_POSITION_MAX_AGE_S = 900;
const SVG_NS = "http://www.w3.org/2000/svg";

function isNarrowScreen() {
  return typeof window.matchMedia === "function" && window.matchMedia(NARROW_SCREEN).matches;
}

/** A small DOM builder: el("span", {class: "x", dataset: {a: 1}}, "text", child). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") Object.assign(node.style, v); // CSSOM: allowed under a strict CSP
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** el() for SVG: attributes as given (they are presentation, not HTML), `text` as textContent. */
function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Local "YYYY-MM-DD HH:mm:ss": unambiguous in both languages, sorts as it reads. */
function fmtTime(value) {
  if (!value) return t("field.none");
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) return String(value);
  const d = new Date(ms);
  const p2 = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} `
    + `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

function fmtCoords(lat, lon) {
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return t("field.none");
  return t("field.coords", { lat: lat.toFixed(5), lon: lon.toFixed(5) });
}

/** Put data-* hooks on a Leaflet layer's element, when it has one right now. */
function tagElement(layer, data) {
  const node = layer.getElement ? layer.getElement() : null;
  if (!node) return;
  for (const [k, v] of Object.entries(data)) node.dataset[k] = String(v);
}

function hasPosition(obj) {
  return obj && Number.isFinite(obj.lat) && Number.isFinite(obj.lon);
}

/** A popup body: a heading and a definition list, all textContent. */
function popupBody(heading, rows, extra) {
  const dl = el("dl", { class: "popup-fields" });
  for (const [key, value] of rows) {
    if (value === undefined) continue;
    dl.append(el("dt", { text: t(key) }), el("dd", { text: value === null || value === "" ? t("field.none") : String(value) }));
  }
  return el("div", { class: "popup" }, el("h3", { class: "popup-title", text: heading || t("field.none") }), dl, extra);
}

/** Parse ?bbox=west,south,east,north (a wall display of one area), or null. */
export function bboxFromQuery(search) {
  const raw = new URLSearchParams(search).get("bbox");
  if (!raw) return null;
  const parts = raw.split(",").map(Number);
  return parts.length === 4 && parts.every(Number.isFinite) ? parts : null;
}

// --- The console ----------------------------------------------------------------

class Console extends Page {
  constructor() {
    super({
      state: new ConsoleState(),
      soundKey: SOUND_KEY,
      bbox: typeof window !== "undefined" ? bboxFromQuery(window.location.search) : null,
    });
    this.role = null;
    this.username = null;
    this.filters = { kind: "", status: "", district: "" };
    // GET /api/config: tile URL, SLA targets, low-stock lines (null until it answers).
    this.config = null;
    this.tab = "map";
    this.wantedTab = null; // a tab asked for (the address) before the role was known
    this.unseenNew = 0; // incidents opened while another tab was shown
    this.slaStates = new Map(); // queue row id -> the SLA state it shows
    this.boards = {
      units: { rows: new Map(), filter: "", dirty: true },
      depots: { data: null, resp: null, loading: false, at: 0, gen: 0, timer: null },
      dashboard: { kind: null, district: null, resp: null, loading: false, at: 0, gen: 0, days: DEFAULT_PERIOD, width: 0 },
      dead: { data: null, resp: null, loading: false, at: 0, gen: 0 },
    };

    this.map = null;
    this.layers = null;
    this.layersControl = null;
    this.legend = null;
    this.tileLayer = null;
    this.incidentViews = new Map(); // id -> {marker, area, areaKey}
    this.unitMarkers = new Map(); // id -> marker
    this.districts = new Map(); // id -> district
    this.districtLabels = []; // [{node, district}]
    this.queueItems = new Map(); // id -> <li>
    this.newUntil = new Map(); // id -> ms
    this.selectedId = null;
    // The open incident detail panel: {id, incident, rec, incResp, recResp, loading}, or null.
    this.detail = null;
    this.detailTimer = null;
    this.detailLastFetch = 0;
    this.detailGen = 0; // answers to an older fetch are dropped
    this.seenKinds = new Set(KINDS);
    this.seenStatuses = new Set(ACTIVE_STATUSES);
    this.seenDistricts = new Set();

    this.pending = { reset: false, incidents: new Set(), units: new Set(), queue: false, detail: false };
    this.flushScheduled = false;

    // Symbols grow with the root font size (which grows with the screen), so a
    // wall screen's markers are as readable across the room as a laptop's.
    const rootPx = parseFloat(getComputedStyle(document.documentElement).fontSize) || 15;
    this.symbolScale = Math.min(2, Math.max(1, rootPx / 15));
  }

  // ---- start-up (Page.boot) ----

  bindPage() {
    this.bindQueue();
    this.bindDetail();
    this.bindNav();
    this.bindBoards();
    this.wantedTab = tabFromHash(window.location.hash);
  }

  async start() {
    window.addEventListener("offline", () => {
      if (!this.feed.ws && this.feed.running) this.setConnState("offline");
    });
    setInterval(() => this.refreshAges(), 15000);
    setInterval(() => this.tickDetail(), 1000);
    setInterval(() => this.tick(), 1000);

    const probe = await this.api.request("GET", "/api/incidents");
    if (probe.status === 401) {
      this.showLogin();
      return;
    }
    // Any other answer, even none (server down), goes to the console: the
    // feed will show "reconnecting" and catch up when the server is back.
    if (probe.status === 200 && probe.body) {
      const list = Array.isArray(probe.body) ? probe.body : probe.body.incidents;
      if (Array.isArray(list)) this.state.seed(list);
    }
    this.showConsole();
  }

  // ---- views ----

  setView(view) {
    this.view = view;
    document.body.dataset.view = view;
    this.$("login-view").hidden = view !== "login";
    this.$("console-view").hidden = view !== "console";
    this.$("logout-button").hidden = view !== "console";
    this.$("sound-toggle").hidden = view !== "console";
    this.$("view-nav").hidden = view !== "console";
    this.renderUser();
  }

  showLogin(message) {
    this.feed.stop();
    this.api.token = null;
    this.role = null;
    this.username = null;
    // Another user may sign in next: forget everything the last one could see.
    this.state.clear();
    this.clearLiveViews();
    this.clearDataLayers();
    this.clearBoards();
    this.showLoginForm(message);
  }

  showConsole() {
    this.setView("console");
    if (!this.role) this.loadMe();
    this.ensureMap();
    this.map.invalidateSize();
    this.renderAll();
    this.loadConfig();
    this.loadDataLayers();
    this.feed.start();
    // A view asked for by the address (#units, #dashboard…) before sign-in; the
    // rejected messages wait for the role (an administrator's only).
    const wanted = this.wantedTab || this.tab;
    if (wanted !== "dead-letters" || this.role) this.wantedTab = null;
    this.setTab(wanted === "dead-letters" && this.role !== "admin" ? "map" : wanted);
  }

  /** Who is signed in, after a reload signed in by the cookie alone (the login form told us otherwise). */
  async loadMe() {
    const resp = await this.api.request("GET", "/api/me");
    if (this.view !== "console" || resp.status !== 200 || !resp.body || typeof resp.body !== "object") return;
    if (resp.body.role) this.role = String(resp.body.role);
    if (resp.body.username) this.username = String(resp.body.username);
    this.renderUser();
    this.renderDetail();
    const wanted = this.wantedTab;
    this.wantedTab = null;
    if (wanted && wanted !== this.tab) this.setTab(wanted);
    else this.renderNav();
  }

  // ---- header (the rest is Page's) ----

  renderUser() {
    const node = this.$("user-info");
    const parts = [];
    if (this.username) parts.push(this.username);
    if (this.role) parts.push(label("role", this.role));
    node.textContent = parts.join(" · ");
    node.hidden = this.view !== "console" || parts.length === 0;
  }

  // ---- login (the form is Page's) ----

  whoSignedIn(body, username) {
    return { role: body.role ? String(body.role) : null, username };
  }

  signedIn(who) {
    this.role = who.role;
    this.username = who.username;
    this.showConsole();
  }

  // ---- map ----

  ensureMap() {
    if (this.map) return;
    const map = L.map("map", { center: MAP_CENTER, zoom: MAP_ZOOM, zoomControl: true, worldCopyJump: false });
    this.map = map;
    // Our own basemap sits between tiles (200) and overlays (400).
    map.createPane("districts").style.zIndex = "250";
    map.createPane("roads").style.zIndex = "260";
    map.createPane("districtLabels").style.zIndex = "390";
    map.getPane("districts").style.pointerEvents = "none";
    map.getPane("roads").style.pointerEvents = "none";
    map.getPane("districtLabels").style.pointerEvents = "none";
    this.roadRenderer = L.canvas({ pane: "roads", padding: 0.2 });

    this.layers = {
      incidents: L.featureGroup(),
      units: L.featureGroup(),
      depots: L.featureGroup(),
      hazards: L.featureGroup(),
      sites: L.featureGroup(),
      districts: L.featureGroup(),
      roads: L.featureGroup(),
    };
    for (const name of ["roads", "districts", "hazards", "sites", "depots", "incidents", "units"]) {
      this.layers[name].addTo(map);
    }

    // Raster tiles come with GET /api/config (applyTiles), when the centre has a tile server.
    const scale = L.control.scale({ imperial: false }).addTo(map);
    map.attributionControl.setPrefix(false);
    // SI symbols ("500 m") and the tile server's credit are the same in every language.
    scale.getContainer().setAttribute("translate", "no");
    map.attributionControl.getContainer().setAttribute("translate", "no");
    this.buildLayersControl();
    this.buildLegend();
    if (typeof window.matchMedia === "function") {
      // Open or fold the layer list when the screen crosses the breakpoint (rotation, resize).
      window.matchMedia(NARROW_SCREEN).addEventListener("change", () => this.buildLayersControl());
    }

    map.on("popupopen", (e) => {
      const id = e.popup && e.popup.options ? e.popup.options.incidentId : null;
      if (id) this.select(id, false);
    });
  }

  buildLayersControl() {
    if (!this.map) return;
    if (this.layersControl) this.layersControl.remove();
    const overlays = {};
    const names = ["incidents", "units", "depots", "hazards", "sites", "districts", "roads"];
    for (const name of names) overlays[escapeHtml(t(`layer.${name}`))] = this.layers[name];
    if (this.tileLayer) overlays[escapeHtml(t("layer.tiles"))] = this.tileLayer;
    // Folded to Leaflet's layers button on a phone: open, the list covers over a third of
    // the map's width and whatever incidents lie under it.
    this.layersControl = L.control.layers(null, overlays, { collapsed: isNarrowScreen(), position: "topright" })
      .addTo(this.map);
    const container = this.layersControl.getContainer();
    container.id = "layer-control";
    // Stable hooks for tests whatever the language.
    const inputs = container.querySelectorAll("input.leaflet-control-layers-selector");
    const keys = [...names, ...(this.tileLayer ? ["tiles"] : [])];
    inputs.forEach((input, i) => { if (keys[i]) input.dataset.layer = keys[i]; });
  }

  buildLegend() {
    if (!this.map) return;
    if (this.legend) this.legend.remove();
    const Legend = L.Control.extend({
      options: { position: "bottomleft" },
      onAdd: () => {
        const box = el("div", { class: "legend leaflet-bar", id: "map-legend" });
        box.append(el("div", { class: "legend-title", text: t("legend.severity") }));
        for (const sev of SEVERITIES) {
          box.append(el("div", { class: "legend-row" },
            el("span", { class: "legend-dot", style: { background: SEVERITY_COLOR[sev] } }),
            label("severity", sev)));
        }
        box.append(el("div", { class: "legend-title", text: t("legend.unit_status") }));
        for (const st of UNIT_STATUSES) {
          box.append(el("div", { class: "legend-row" },
            el("span", { class: "legend-square", style: { background: UNIT_STATUS_COLOR[st] } }),
            label("unit_status", st)));
        }
        L.DomEvent.disableClickPropagation(box);
        return box;
      },
    });
    this.legend = new Legend().addTo(this.map);
  }

  // ---- static data layers ----

  clearDataLayers() {
    if (!this.layers) return;
    for (const name of ["depots", "hazards", "sites", "districts", "roads"]) this.layers[name].clearLayers();
    this.districts.clear();
    this.districtLabels = [];
  }

  loadDataLayers() {
    this.clearDataLayers();
    const failed = [];
    const jobs = [
      ["districts", (b) => this.drawDistricts(b.districts)],
      ["roads", (b) => this.drawRoads(b.roads)],
      ["depots", (b) => {
        this.drawDepots(b.depots);
        // The same list starts the depots board, so its tab can warn before it is opened.
        if (!this.boards.depots.data) {
          this.boards.depots.data = b.depots;
          this.renderBadges();
        }
      }],
      ["hazards", (b) => this.drawHazards(b.hazards)],
      ["sites", (b) => this.drawSites(b.sites)],
    ].map(async ([name, draw]) => {
      const resp = await this.api.request("GET", `/api/${name}`);
      if (this.view !== "console") return;
      if (resp.status === 401) {
        this.showLogin(t("login.expired"));
        return;
      }
      if (resp.status !== 200 || !resp.body || !Array.isArray(resp.body[name])) {
        failed.push(name);
        return;
      }
      draw(resp.body);
    });
    Promise.all(jobs).then(() => {
      if (failed.length && this.view === "console") {
        this.showMessage(failed.map((name) => t("msg.load_failed", { what: t(`msg.what.${name}`) })).join(" "));
      }
    });
  }

  /** L.geoJSON that survives a malformed geometry (skipped, logged). */
  geo(geometry, options) {
    if (!geometry || typeof geometry !== "object") return null;
    try {
      return L.geoJSON(geometry, options);
    } catch (err) {
      console.warn("skipping bad geometry", err);
      return null;
    }
  }

  districtName(d) {
    if (!d) return "";
    return getLang() === "zh-CN" ? (d.name_zh || d.name || d.id) : (d.name || d.name_zh || d.id);
  }

  /** An incident's district field, as a localised name when we know it. */
  districtLabel(value) {
    if (value === null || value === undefined || value === "") return t("field.none");
    const d = this.districts.get(String(value));
    return d ? this.districtName(d) : String(value);
  }

  drawDistricts(list) {
    for (const d of list) {
      if (!d || d.id === undefined) continue;
      this.districts.set(String(d.id), d);
      const shape = this.geo(d.geometry, {
        pane: "districts",
        interactive: false,
        style: { color: "#3d5a80", weight: 1.6, opacity: 0.8, fill: true, fillColor: "#3d5a80", fillOpacity: 0.035 },
      });
      if (!shape) continue;
      shape.addTo(this.layers.districts);
      const node = el("span", { class: "district-label-text", text: this.districtName(d) });
      const icon = L.divIcon({ className: "district-label", html: node, iconSize: null });
      L.marker(shape.getBounds().getCenter(), { icon, interactive: false, keyboard: false, pane: "districtLabels" })
        .addTo(this.layers.districts);
      this.districtLabels.push({ node, district: d });
      node.setAttribute("translate", "no"); // a place name, as the data spells it
    }
    this.refreshQueueContent(); // district names in the queue
    this.renderFilters(); // and in the district filter
    if (this.tab === "units") this.renderUnitsBoard(null);
  }

  drawRoads(list) {
    const features = [];
    for (const r of list) {
      if (r && r.geometry) features.push({ type: "Feature", geometry: r.geometry, properties: { speed: Number(r.speed_kmh) } });
    }
    const layer = this.geo({ type: "FeatureCollection", features }, {
      pane: "roads",
      renderer: this.roadRenderer,
      interactive: false,
      style: (f) => {
        const fast = f.properties.speed >= 60;
        return { color: fast ? "#7a838f" : "#a3abb5", weight: fast ? 3 : 1.2, opacity: 0.9, lineCap: "round" };
      },
    });
    if (layer) layer.addTo(this.layers.roads);
  }

  drawDepots(list) {
    for (const depot of list) {
      const lat = Number(depot && depot.lat);
      const lon = Number(depot && depot.lon);
      if (!Number.isFinite(lat) || !Number.isFinite(lon)) continue;
      const marker = L.marker([lat, lon], {
        icon: L.divIcon({ className: "depot-marker", iconSize: [Math.round(14 * this.symbolScale), Math.round(14 * this.symbolScale)] }),
        keyboard: false,
      });
      marker.bindPopup(() => {
        const stock = el("ul", { class: "popup-stock" });
        for (const s of Array.isArray(depot.stock) ? depot.stock : []) {
          stock.append(el("li", { text: t("stock.item", { item: s.item ?? "", quantity: s.quantity ?? "", unit: s.unit ?? "" }) }));
        }
        return popupBody(depot.name, [
          ["field.id", depot.id],
          ["field.district", this.districtLabel(depot.district)],
          ["field.location", fmtCoords(lat, lon)],
          ["field.stock", stock.childElementCount ? "" : null],
        ], stock.childElementCount ? stock : null);
      });
      marker.addTo(this.layers.depots);
    }
  }

  attrsList(attrs) {
    if (!attrs || typeof attrs !== "object") return null;
    const entries = Object.entries(attrs);
    if (!entries.length) return null;
    const ul = el("ul", { class: "popup-attrs" });
    for (const [k, v] of entries) {
      ul.append(el("li", { text: `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}` }));
    }
    return ul;
  }

  drawHazards(list) {
    for (const h of list) {
      if (!h) continue;
      const color = "#c2410c";
      const layer = this.geo(h.geometry, {
        style: { color, weight: 1.5, dashArray: "5 4", fillColor: color, fillOpacity: 0.12 },
        pointToLayer: (_f, latlng) => L.circleMarker(latlng, {
          radius: 6, color, weight: 2, dashArray: "3 2", fillColor: "#fed7aa", fillOpacity: 0.9,
        }),
      });
      if (!layer) continue;
      layer.bindPopup(() => popupBody(h.name, [
        ["field.kind", label("hazard_kind", h.kind)],
        ["field.id", h.id],
      ], this.attrsList(h.attrs)));
      layer.addTo(this.layers.hazards);
    }
  }

  drawSites(list) {
    for (const s of list) {
      if (!s) continue;
      const color = "#1d4ed8";
      const layer = this.geo(s.geometry, {
        style: { color, weight: 1.2, fillColor: color, fillOpacity: 0.1 },
        pointToLayer: (_f, latlng) => L.circleMarker(latlng, {
          radius: 5, color, weight: 2, fillColor: "#ffffff", fillOpacity: 1,
        }),
      });
      if (!layer) continue;
      layer.bindPopup(() => popupBody(s.name, [
        ["field.kind", label("site_kind", s.kind)],
        ["field.capacity", s.capacity ?? null],
        ["field.beds", s.beds ?? null],
        ["field.id", s.id],
      ]));
      layer.addTo(this.layers.sites);
    }
  }

  // ---- live data ----

  onMessage(msg) {
    const changes = this.state.apply(msg);
    if (changes.error) {
      const m = changes.error.message || changes.error.code || t("msg.unknown_error");
      this.showMessage(t("msg.ws_error", { message: String(m) }));
    }
    if (changes.reset) {
      this.pending.reset = true;
      this.newUntil.clear();
    }
    for (const id of changes.incidents) this.pending.incidents.add(id);
    if (this.detail && (changes.reset || changes.updated.includes(this.detail.id))) this.scheduleDetailRefresh();
    for (const id of changes.units) this.pending.units.add(id);
    if (this.detail) {
      for (const { name, data } of changes.activity) {
        if (String(data.incident_id) !== this.detail.id) continue;
        this.applyDetailActivity(name, data);
        this.pending.detail = true;
      }
    }
    if (changes.opened.length) {
      const until = Date.now() + NEW_HIGHLIGHT_MS;
      for (const id of changes.opened) this.newUntil.set(id, until);
      this.beeper.beep();
      setTimeout(() => this.expireNew(), NEW_HIGHLIGHT_MS + 50);
      this.announceNew(changes.opened);
    }
    if (changes.activity.some((a) => a.name.startsWith("dispatch."))) this.depotsMayHaveChanged();
    this.renderConnState(); // last seq
    if (changes.reset || changes.incidents.size || changes.units.size || this.pending.detail) this.scheduleFlush();
  }

  /**
   * Coalesce redraws: many events in one frame cost one queue render. rAF
   * stops in hidden tabs, so a timer backs it up (a wall screen may be "hidden").
   */
  scheduleFlush() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const run = () => this.flush();
    requestAnimationFrame(run);
    setTimeout(run, 120);
  }

  flush() {
    if (!this.flushScheduled) return;
    this.flushScheduled = false;
    if (!this.map) return;
    const p = this.pending;
    this.pending = { reset: false, incidents: new Set(), units: new Set(), queue: false, detail: false };
    if (p.reset) {
      this.renderAll();
      this.renderDetail();
      if (this.tab === "units") this.renderUnitsBoard(null);
      else this.boards.units.dirty = true;
      return;
    }
    for (const id of p.incidents) this.renderIncident(id);
    for (const id of p.units) this.renderUnit(id);
    if (p.incidents.size) this.renderQueue(p.incidents);
    if (p.units.size) {
      if (this.tab === "units") this.renderUnitsBoard(p.units);
      else this.boards.units.dirty = true;
    }
    // Live header fields, dispatches and tasks.
    if (this.detail && (p.detail || p.incidents.has(this.detail.id))) this.renderDetail();
  }

  clearLiveViews() {
    if (this.layers) {
      this.layers.incidents.clearLayers();
      this.layers.units.clearLayers();
    }
    this.incidentViews.clear();
    this.unitMarkers.clear();
    this.queueItems.clear();
    this.newUntil.clear();
    this.selectedId = null;
    this.closeDetail();
    this.$("incident-queue").replaceChildren();
    this.slaStates.clear();
    this.boards.units.rows.clear();
    this.$("units-rows").replaceChildren();
    this.unseenNew = 0;
    this.renderBadges();
    this.pending = { reset: false, incidents: new Set(), units: new Set(), queue: false, detail: false };
    this.renderConnState();
    this.renderQueueSummary(0, 0, 0);
  }

  renderAll() {
    if (!this.map) return;
    for (const id of [...this.incidentViews.keys()]) {
      if (!this.state.incidents.has(id)) this.removeIncidentView(id);
    }
    for (const id of this.state.incidents.keys()) this.renderIncident(id);
    for (const [id, marker] of [...this.unitMarkers]) {
      if (!this.state.units.has(id)) {
        this.layers.units.removeLayer(marker);
        this.unitMarkers.delete(id);
      }
    }
    for (const id of this.state.units.keys()) this.renderUnit(id);
    this.queueItems.clear(); // rebuild rows from scratch after a snapshot
    this.$("incident-queue").replaceChildren();
    this.renderQueue(null);
  }

  removeIncidentView(id) {
    const v = this.incidentViews.get(id);
    if (!v) return;
    if (v.marker) this.layers.incidents.removeLayer(v.marker);
    if (v.area) this.layers.incidents.removeLayer(v.area);
    this.incidentViews.delete(id);
  }

  renderIncident(id) {
    const inc = this.state.incidents.get(id);
    if (inc) this.noteVocabulary(inc);
    if (!inc || !matchesFilters(inc, this.filters)) {
      this.removeIncidentView(id);
      return;
    }
    let v = this.incidentViews.get(id);
    if (!v) {
      v = { marker: null, area: null, areaKey: "", areaColor: "" };
      this.incidentViews.set(id, v);
    }
    const color = SEVERITY_COLOR[inc.severity] || SEVERITY_COLOR.Unknown;
    const radius = ({ Extreme: 11, Severe: 9, Moderate: 8, Minor: 7 }[inc.severity] || 6) * this.symbolScale;
    const sevClass = classToken(inc.severity, SEVERITIES);

    // The area first, so the marker draws on top of it.
    const areaKey = inc.area ? JSON.stringify(inc.area) : "";
    if (areaKey !== v.areaKey || color !== v.areaColor) {
      if (v.area) this.layers.incidents.removeLayer(v.area);
      v.area = null;
      v.areaKey = areaKey;
      v.areaColor = color;
      if (inc.area) {
        v.area = this.geo(inc.area, {
          interactive: false,
          style: { color, weight: 1.5, dashArray: "6 4", fillColor: color, fillOpacity: 0.12 },
          pointToLayer: (_f, latlng) => L.circleMarker(latlng, { radius: 3, color, interactive: false }),
        });
        if (v.area) {
          v.area.addTo(this.layers.incidents);
          v.area.bringToBack();
        }
      }
    }

    if (!hasPosition(inc)) {
      if (v.marker) this.layers.incidents.removeLayer(v.marker);
      v.marker = null;
      return;
    }
    const style = {
      radius, color: "#ffffff", weight: 2, fillColor: color, fillOpacity: 0.92,
      className: `incident-marker sev-${sevClass}`,
    };
    if (!v.marker) {
      v.marker = L.circleMarker([inc.lat, inc.lon], style);
      v.marker.bindPopup(() => this.incidentPopup(this.state.incidents.get(id)), { incidentId: id, maxWidth: 320 });
      // The SVG path is recreated whenever the layer is toggled back on.
      // data-map-incident-id, not data-incident-id: that one belongs to queue rows only.
      v.marker.on("add", () => tagElement(v.marker, { mapIncidentId: id }));
      v.marker.addTo(this.layers.incidents);
    } else {
      v.marker.setLatLng([inc.lat, inc.lon]);
      v.marker.setStyle(style);
      v.marker.setRadius(radius);
      if (v.marker.isPopupOpen()) v.marker.getPopup().update();
    }
    v.marker.bringToFront();
    this.markNewOnMap(id);
  }

  /** A new incident's marker pulses while its queue row is highlighted. */
  markNewOnMap(id) {
    const v = this.incidentViews.get(id);
    const node = v && v.marker ? v.marker.getElement() : null;
    if (node) node.classList.toggle("is-new", (this.newUntil.get(id) || 0) > Date.now());
  }

  incidentPopup(inc) {
    if (!inc) return el("div", { text: t("field.none") });
    const last = inc.last_alarm && typeof inc.last_alarm === "object"
      ? t("field.sensor", { sensor: inc.last_alarm.sensor_id ?? "", alarm: inc.last_alarm.id ?? "", time: fmtTime(inc.last_alarm.time) })
      : undefined;
    const body = popupBody(inc.title, [
      ["field.id", inc.id],
      ["field.kind", label("kind", inc.kind)],
      ["field.category", label("category", inc.category)],
      ["field.severity", label("severity", inc.severity)],
      ["field.status", label("status", inc.status)],
      ["field.district", this.districtLabel(inc.district)],
      ["field.alarm_count", inc.alarm_count ?? 0],
      ["field.opened_at", fmtTime(inc.opened_at)],
      ["field.updated_at", fmtTime(inc.updated_at)],
      ["field.location", fmtCoords(inc.lat, inc.lon)],
      ["field.last_alarm", last],
    ]);
    body.classList.add("incident-popup", `sev-${classToken(inc.severity, SEVERITIES)}`);
    body.dataset.popupIncidentId = inc.id;
    return body;
  }

  unitIcon(unit) {
    const st = classToken(unit.status, UNIT_STATUSES);
    const size = Math.round(14 * this.symbolScale);
    return L.divIcon({ className: `unit-marker unit-${st}`, iconSize: [size, size] });
  }

  renderUnit(id) {
    const unit = this.state.units.get(id);
    let marker = this.unitMarkers.get(id);
    if (!unit || !hasPosition(unit)) {
      if (marker) {
        this.layers.units.removeLayer(marker);
        this.unitMarkers.delete(id);
      }
      return;
    }
    if (!marker) {
      const m = L.marker([unit.lat, unit.lon], { icon: this.unitIcon(unit), keyboard: false, riseOnHover: true });
      marker = m;
      m._unitStatus = unit.status;
      m.bindTooltip(el("span", { text: String(unit.callsign ?? id) }), { direction: "top", offset: [0, -8] });
      m.bindPopup(() => this.unitPopup(this.state.units.get(id)));
      // The icon element is recreated on every add and setIcon: tag it each time.
      m.on("add", () => tagElement(m, { unitId: id, status: m._unitStatus ?? "" }));
      m.addTo(this.layers.units);
      this.unitMarkers.set(id, m);
    } else {
      marker.setLatLng([unit.lat, unit.lon]);
      if (marker._unitStatus !== unit.status) {
        marker._unitStatus = unit.status;
        marker.setIcon(this.unitIcon(unit));
        tagElement(marker, { unitId: id, status: unit.status ?? "" });
      }
      marker.setTooltipContent(el("span", { text: String(unit.callsign ?? id) }));
      if (marker.isPopupOpen()) marker.getPopup().update();
    }
  }

  unitPopup(unit) {
    if (!unit) return el("div", { text: t("field.none") });
    return popupBody(unit.callsign ?? unit.id, [
      ["field.id", unit.id],
      ["field.type", label("unit_type", unit.type)],
      ["field.status", label("unit_status", unit.status)],
      ["field.location", fmtCoords(unit.lat, unit.lon)],
      ["field.position_at", fmtTime(unit.position_at)],
    ]);
  }

  // ---- queue ----

  bindQueue() {
    const list = this.$("incident-queue");
    const activate = (e) => {
      const li = e.target.closest("[data-incident-id]");
      if (li) this.select(li.dataset.incidentId, true);
    };
    list.addEventListener("click", activate);
    list.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        activate(e);
      }
    });
    this.$("filter-kind").addEventListener("change", (e) => this.setFilter("kind", e.target.value));
    this.$("filter-status").addEventListener("change", (e) => this.setFilter("status", e.target.value));
    this.$("filter-district").addEventListener("change", (e) => this.setFilter("district", e.target.value));
  }

  setFilter(name, value) {
    this.filters[name] = value;
    if (!this.map) return;
    for (const id of [...this.incidentViews.keys()]) this.renderIncident(id);
    for (const id of this.state.incidents.keys()) this.renderIncident(id);
    this.renderQueue(null);
  }

  /** Add unseen kinds/statuses to the filter selects (values outside our vocabulary). */
  noteVocabulary(inc) {
    let changed = false;
    if (inc.kind && !this.seenKinds.has(inc.kind)) {
      this.seenKinds.add(String(inc.kind));
      changed = true;
    }
    if (inc.status && !isTerminal(inc.status) && !this.seenStatuses.has(inc.status)) {
      this.seenStatuses.add(String(inc.status));
      changed = true;
    }
    if (inc.district !== null && inc.district !== undefined && inc.district !== "" && !this.seenDistricts.has(String(inc.district))) {
      this.seenDistricts.add(String(inc.district));
      changed = true;
    }
    if (changed) this.renderFilters();
  }

  renderFilters() {
    const fill = (select, allKey, values, group) => {
      const current = select.value;
      select.replaceChildren(el("option", { value: "", text: t(allKey) }));
      for (const v of values) select.append(el("option", { value: v, text: label(group, v) }));
      select.value = values.includes(current) ? current : "";
    };
    fill(this.$("filter-kind"), "filter.all_kinds", [...this.seenKinds], "kind");
    fill(this.$("filter-status"), "filter.all_statuses", [...this.seenStatuses], "status");
    this.$("filter-kind").value = this.filters.kind;
    this.$("filter-status").value = this.filters.status;
    // Districts: those the city has and any an incident names, by their localised name.
    const districts = this.$("filter-district");
    const ids = [...new Set([...this.districts.keys(), ...this.seenDistricts])]
      .sort((a, b) => this.districtLabel(a).localeCompare(this.districtLabel(b), getLang()));
    districts.replaceChildren(el("option", { value: "", text: t("filter.all_districts") }));
    for (const id of ids) districts.append(el("option", { value: id, translate: "no", text: this.districtLabel(id) }));
    districts.value = ids.includes(this.filters.district) ? this.filters.district : "";
  }

  /**
   * Reorder the list to the current priority, reusing rows; only rows in
   * `changed` (or all, when null) get their content rewritten.
   */
  renderQueue(changed) {
    const list = this.$("incident-queue");
    const all = queueOf(this.state.incidents.values(), this.filters, this.slaClock(Date.now()));
    const shown = all.slice(0, QUEUE_LIMIT);
    const keep = new Set();
    let cursor = list.firstChild;
    for (const inc of shown) {
      keep.add(inc.id);
      let li = this.queueItems.get(inc.id);
      if (!li) {
        li = el("li", { class: "incident-item", tabindex: "0", role: "button" });
        li.dataset.incidentId = inc.id;
        this.queueItems.set(inc.id, li);
        this.fillItem(li, inc);
      } else if (changed === null || changed.has(inc.id)) {
        this.fillItem(li, inc);
      }
      if (li === cursor) cursor = cursor.nextSibling;
      else list.insertBefore(li, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    for (const id of [...this.queueItems.keys()]) {
      if (!keep.has(id)) {
        this.queueItems.delete(id);
        this.slaStates.delete(id);
      }
    }
    let active = 0;
    for (const inc of this.state.incidents.values()) if (!isTerminal(inc.status)) active += 1;
    this.renderQueueSummary(shown.length, all.length, active);
  }

  renderQueueSummary(shown, matching, active) {
    const filtered = Boolean(this.filters.kind || this.filters.status || this.filters.district);
    this.$("queue-count").textContent = filtered
      ? t("queue.count_filtered", { n: matching, total: active })
      : t("queue.count", { n: active });
    const empty = this.$("queue-empty");
    empty.hidden = matching > 0;
    empty.textContent = filtered ? t("queue.empty_filtered") : t("queue.empty");
    const more = this.$("queue-more");
    more.hidden = matching <= shown;
    more.textContent = matching > shown ? t("queue.more", { n: matching - shown }) : "";
  }

  refreshQueueContent() {
    for (const [id, li] of this.queueItems) {
      const inc = this.state.incidents.get(id);
      if (inc) this.fillItem(li, inc);
    }
  }

  fillItem(li, inc) {
    const sev = classToken(inc.severity, SEVERITIES);
    const isNew = (this.newUntil.get(inc.id) || 0) > Date.now();
    li.className = `incident-item sev-${sev}${isNew ? " is-new" : ""}${this.selectedId === inc.id ? " is-selected" : ""}`;
    li.dataset.severity = inc.severity ?? "";
    li.dataset.status = inc.status ?? "";
    li.dataset.kind = inc.kind ?? "";
    li.dataset.district = inc.district ?? "";
    const count = Number(inc.alarm_count) || 0;
    const openedMs = timeOf(inc.opened_at);
    const target = this.slaTarget();
    const sla = slaState(inc, Date.now(), target);
    li.dataset.sla = sla.state;
    this.slaStates.set(inc.id, sla.state);
    const slaBadge = sla.state === "none" ? null : el("span", {
      class: "sla-badge", title: t("queue.sla_title", { s: target }), dataset: { slaOpened: String(openedMs) },
    });
    // replaceChildren would write a missing badge as the text "null": only real nodes go in.
    li.replaceChildren(...[
      el("div", { class: "item-top" },
        el("span", { class: "sev-badge", text: label("severity", inc.severity) }),
        // The title is the server's words (a report, a CAP headline): not ours to translate.
        inc.title
          ? el("span", { class: "item-title", translate: "no", text: inc.title })
          : el("span", { class: "item-title", text: label("kind", inc.kind) }),
        isNew ? el("span", { class: "new-badge", text: t("queue.new") }) : null),
      slaBadge,
      el("div", { class: "item-meta" },
        el("span", { class: "item-kind", text: label("kind", inc.kind) }),
        el("span", { class: "item-district", translate: "no", text: this.districtLabel(inc.district) }),
        el("span", { class: "item-status", text: label("status", inc.status) }),
        el("span", { class: "item-alarms", text: count === 1 ? t("queue.alarm_one") : t("queue.alarms", { n: count }) }),
        el("span", { class: "item-age", dataset: { opened: String(openedMs) }, text: formatAge(openedMs, Date.now()) }),
        hasPosition(inc) || inc.area ? null : el("span", { class: "item-noloc", text: t("queue.no_location") })),
    ].filter(Boolean));
    li.setAttribute("aria-label", `${label("severity", inc.severity)}: ${inc.title || ""}`);
    if (slaBadge) this.paintSla(slaBadge, sla);
  }

  refreshAges() {
    const now = Date.now();
    for (const node of this.$("incident-queue").querySelectorAll(".item-age")) {
      node.textContent = formatAge(Number(node.dataset.opened), now);
    }
  }

  expireNew() {
    const now = Date.now();
    for (const [id, until] of [...this.newUntil]) {
      if (until > now) continue;
      this.newUntil.delete(id);
      const li = this.queueItems.get(id);
      const inc = this.state.incidents.get(id);
      if (li && inc) this.fillItem(li, inc);
      this.markNewOnMap(id);
    }
  }

  select(id, pan) {
    const prev = this.selectedId ? this.queueItems.get(this.selectedId) : null;
    if (prev) prev.classList.remove("is-selected");
    this.selectedId = id;
    const li = this.queueItems.get(id);
    if (li) {
      li.classList.add("is-selected");
      if (!pan) li.scrollIntoView({ block: "nearest" });
    }
    this.openDetail(id);
    if (!pan || !this.map) return;
    if (!this.map.hasLayer(this.layers.incidents)) this.map.addLayer(this.layers.incidents);
    const v = this.incidentViews.get(id);
    if (v && v.marker) {
      this.map.setView(v.marker.getLatLng(), Math.max(this.map.getZoom(), 14), { animate: true });
      v.marker.openPopup();
    } else if (v && v.area) {
      this.map.fitBounds(v.area.getBounds(), { maxZoom: 15 });
    }
  }

  // ---- server settings (GET /api/config) ----

  async loadConfig() {
    const resp = await this.api.request("GET", "/api/config");
    if (this.view !== "console") return;
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    if (resp.status !== 200 || !resp.body || typeof resp.body !== "object") {
      // The console works without it: no tiles, no SLA ordering, no low-stock lines.
      this.showMessage(t("msg.load_failed", { what: t("msg.what.config") }));
      return;
    }
    this.config = resp.body;
    this.applyTiles();
    this.renderBadges(); // low-stock lines
    this.renderQueue(null); // SLA order and badges (every row is refilled)
    if (this.tab === "units") this.renderUnitsBoard(null);
    if (this.tab === "depots") this.renderDepots();
  }

  /** The dispatch target in seconds, or null before the settings arrive. */
  slaTarget() {
    const s = this.config && this.config.sla ? Number(this.config.sla.dispatch_s) : NaN;
    return s > 0 ? s : null;
  }

  slaClock(now) {
    const dispatchS = this.slaTarget();
    return dispatchS ? { now, dispatchS } : null;
  }

  /** Add the centre's raster tiles under our own basemap, once, when the server names a tile URL. */
  applyTiles() {
    const url = this.config && typeof this.config.tile_url === "string" ? this.config.tile_url.trim() : "";
    if (!this.map || !url || this.tileLayer) return;
    this.tileLayer = L.tileLayer(url, {
      maxZoom: 19,
      // Leaflet puts attributions in as HTML; the setting is plain text.
      attribution: escapeHtml(this.config.tile_attribution || ""),
    }).addTo(this.map);
    this.buildLayersControl();
  }

  // ---- the SLA clock in the queue ----

  /** A queue row's SLA badge: the countdown to the dispatch target, or how long past it. */
  paintSla(node, sla) {
    node.classList.toggle("is-breached", sla.state === "breached");
    node.classList.toggle("is-soon", sla.state === "due" && sla.leftMs < (this.slaTarget() || 0) * 1000 / 3);
    node.textContent = sla.state === "breached"
      ? t("queue.sla_breached", { t: formatCountdown(-sla.leftMs) })
      : t("queue.sla_due", { t: formatCountdown(sla.leftMs) });
  }

  /**
   * Count the SLA badges down, and re-sort when an incident crosses its target
   * (it rises). Only rows on screen are checked: with more than QUEUE_LIMIT
   * incidents a breach below the cut shows at the next event that re-sorts.
   */
  tickQueue(now) {
    const target = this.slaTarget();
    if (!target) return;
    const crossed = new Set();
    for (const [id, li] of this.queueItems) {
      const inc = this.state.incidents.get(id);
      if (!inc) continue;
      const sla = slaState(inc, now, target);
      if (sla.state !== (this.slaStates.get(id) || "none")) {
        crossed.add(id);
        continue;
      }
      const badge = sla.state === "none" ? null : li.querySelector(".sla-badge");
      if (badge) this.paintSla(badge, sla);
    }
    if (crossed.size) this.renderQueue(crossed);
  }

  /** Say a new incident aloud (screen readers) and count it on the map tab when another view is shown. */
  announceNew(ids) {
    const first = this.state.incidents.get(ids[0]);
    const title = first ? (first.title || label("kind", first.kind)) : "";
    this.$("announcer").textContent = t("msg.new_incident", { title });
    if (this.tab !== "map") {
      this.unseenNew += ids.length;
      this.renderBadges();
    }
  }

  /** Once a second: countdowns, ages, and the periodic refresh of the view on screen. */
  tick() {
    if (this.view !== "console") return;
    const now = Date.now();
    this.tickQueue(now);
    if (this.tab === "units") this.tickUnits(now);
    const due = (b, every) => !b.loading && now - b.at >= every;
    if (this.tab === "dead-letters" && due(this.boards.dead, DEAD_LETTERS_EVERY_MS)) this.loadDeadLetters();
    if (this.tab === "depots" && due(this.boards.depots, DEPOTS_EVERY_MS)) this.loadDepots();
    if (this.tab === "dashboard" && due(this.boards.dashboard, DASHBOARD_EVERY_MS)) this.loadDashboard();
  }

  // ---- views ----

  bindNav() {
    const nav = this.$("view-nav");
    nav.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-tab]");
      if (button) this.setTab(button.dataset.tab);
    });
    // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
    nav.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
      const tabs = [...nav.querySelectorAll("button[data-tab]")].filter((b) => !b.hidden);
      const i = tabs.indexOf(document.activeElement);
      if (i < 0) return;
      const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      next.focus();
      this.setTab(next.dataset.tab);
    });
    window.addEventListener("hashchange", () => {
      if (this.view === "console") this.setTab(tabFromHash(window.location.hash));
    });
  }

  /** Show one view: the map and queue, or a board. */
  setTab(requested) {
    let tab = TABS.includes(requested) ? requested : "map";
    if (tab === "dead-letters" && this.role !== "admin") tab = "map";
    this.tab = tab;
    document.body.dataset.tab = tab;
    const onMap = tab === "map";
    this.$("map").hidden = !onMap;
    this.$("side-panel").hidden = !onMap;
    this.$("units-view").hidden = tab !== "units";
    this.$("depots-view").hidden = tab !== "depots";
    this.$("dashboard-view").hidden = tab !== "dashboard";
    this.$("dead-letters-view").hidden = tab !== "dead-letters";
    // The address names the view, so a wall screen can be pointed at /#dashboard.
    const hash = onMap ? "" : `#${tab}`;
    if (window.location.hash !== hash && typeof history.replaceState === "function") {
      history.replaceState(null, "", `${window.location.pathname}${window.location.search}${hash}`);
    }
    this.renderNav();
    if (this.view !== "console") return;
    if (onMap) {
      this.unseenNew = 0;
      this.renderBadges();
      if (this.map) this.map.invalidateSize(); // it had no size while hidden
    } else if (tab === "units") {
      this.renderUnitsBoard(null);
      this.tickUnits(Date.now());
    } else if (tab === "depots") {
      this.renderDepots();
      this.loadDepots();
    } else if (tab === "dashboard") {
      this.renderDashboard();
      this.loadDashboard();
    } else if (tab === "dead-letters") {
      this.renderDeadLetters();
      this.loadDeadLetters();
    }
  }

  renderNav() {
    const admin = this.role === "admin";
    for (const button of this.$("view-nav").querySelectorAll("button[data-tab]")) {
      const tab = button.dataset.tab;
      if (tab === "dead-letters") button.hidden = !admin;
      const selected = tab === this.tab;
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
      button.classList.toggle("is-active", selected);
    }
    this.renderBadges();
  }

  renderBadges() {
    const fresh = this.$("tab-map-badge");
    fresh.hidden = this.unseenNew === 0 || this.tab === "map";
    fresh.textContent = String(this.unseenNew);
    fresh.title = t("nav.new_incidents", { n: this.unseenNew });
    const depots = this.boards.depots.data;
    const low = depots ? this.depotWarnings(depots) : 0;
    const warn = this.$("tab-depots-badge");
    warn.hidden = low === 0;
    warn.textContent = String(low);
    warn.title = t("nav.depot_warnings", { n: low });
  }

  bindBoards() {
    this.$("units-filter-status").addEventListener("change", (e) => {
      this.boards.units.filter = e.target.value;
      this.renderUnitsBoard(null);
    });
    this.$("units-rows").addEventListener("click", (e) => {
      const link = e.target.closest("button[data-incident-id]");
      if (!link) return;
      this.setTab("map");
      this.select(link.dataset.incidentId, true);
    });
    this.$("depots-refresh").addEventListener("click", () => this.loadDepots());
    this.$("dashboard-refresh").addEventListener("click", () => this.loadDashboard());
    this.$("dead-letters-refresh").addEventListener("click", () => this.loadDeadLetters());
    this.$("dashboard-period").addEventListener("change", (e) => {
      this.boards.dashboard.days = Number(e.target.value) || DEFAULT_PERIOD;
      this.loadDashboard();
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      // Charts are drawn to their box's width (so text keeps its size): redraw once the resize settles.
      resizeTimer = setTimeout(() => {
        if (this.tab === "dashboard" && this.$("dashboard").clientWidth !== this.boards.dashboard.width) this.renderDashboard();
      }, 150);
    });
    this.renderPeriods();
  }

  renderPeriods() {
    const select = this.$("dashboard-period");
    select.replaceChildren(...DASHBOARD_PERIODS.map((n) => el("option", {
      value: String(n), text: n === 1 ? t("dash.period_day") : t("dash.period_days", { n }),
    })));
    select.value = String(this.boards.dashboard.days);
  }

  /** Forget what the last user's boards showed (another user may sign in next). */
  clearBoards() {
    const b = this.boards;
    clearTimeout(b.depots.timer);
    b.depots = { data: null, resp: null, loading: false, at: 0, gen: b.depots.gen + 1, timer: null };
    b.dashboard = { kind: null, district: null, resp: null, loading: false, at: 0, gen: b.dashboard.gen + 1, days: b.dashboard.days, width: 0 };
    b.dead = { data: null, resp: null, loading: false, at: 0, gen: b.dead.gen + 1 };
    this.$("depots-board").replaceChildren();
    this.$("dashboard").replaceChildren();
    this.$("dead-letters-rows").replaceChildren();
    this.renderBadges();
  }

  relabelBoards() {
    this.renderPeriods();
    if (this.view !== "console") return;
    this.renderUnitsBoard(null);
    this.renderDepots();
    this.renderDashboard();
    this.renderDeadLetters();
  }

  /**
   * GET `path` for a board: stale answers (a newer fetch, a sign-out) are dropped,
   * 401 signs out; returns the response, or null when it no longer matters.
   */
  async fetchBoard(board, path, render) {
    const gen = ++board.gen;
    board.loading = true;
    render();
    const resp = await this.api.request("GET", path);
    if (gen !== board.gen || this.view !== "console") return null;
    board.loading = false;
    board.at = Date.now();
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return null;
    }
    board.resp = resp;
    return resp;
  }

  /** "Loading…", the failure in the server's words, or when it was updated. */
  boardStatus(node, board, everyMs) {
    const failed = board.resp && !(board.resp.status === 200 && board.resp.body && typeof board.resp.body === "object");
    node.classList.toggle("is-error", Boolean(failed));
    if (board.loading && !board.at) node.textContent = t("board.loading");
    else if (failed) {
      node.textContent = t("board.failed", {
        message: board.resp.status === 0 ? t("detail.network") : errorMessage(board.resp.body, "action.failed"),
      });
    } else if (board.at) node.textContent = t("board.updated_auto", { time: fmtTime(new Date(board.at).toISOString()), n: everyMs / 1000 });
    else node.textContent = "";
  }

  /** A vocabulary value as a span: translated when we know it, else the raw value, marked as data. */
  vocab(group, value, cls) {
    const known = value !== null && value !== undefined && value !== "" && has(`${group}.${value}`);
    return el("span", { class: cls, translate: known ? undefined : "no", text: label(group, value) });
  }

  // ---- units board ----

  positionMaxAgeMs() {
    const s = this.config ? Number(this.config.position_max_age_s) : NaN;
    return (s > 0 ? s : DEFAULT_POSITION_MAX_AGE_S) * 1000;
  }

  /** Rows in call-sign order (natural: "Engine 2" before "Engine 10"), filtered by status; rows reused. */
  renderUnitsBoard(changed) {
    const b = this.boards.units;
    if (this.tab !== "units") {
      b.dirty = true;
      return;
    }
    if (b.dirty) changed = null;
    b.dirty = false;
    const all = [...this.state.units.values()].sort((x, y) =>
      String(x.callsign ?? x.id).localeCompare(String(y.callsign ?? y.id), undefined, { numeric: true })
      || String(x.id).localeCompare(String(y.id)));
    const shown = b.filter ? all.filter((u) => u.status === b.filter) : all;
    const body = this.$("units-rows");
    const now = Date.now();
    const keep = new Set();
    let cursor = body.firstChild;
    for (const unit of shown) {
      keep.add(unit.id);
      let tr = b.rows.get(unit.id);
      if (!tr) {
        tr = el("tr", { class: "unit-row" });
        b.rows.set(unit.id, tr);
        this.fillUnitRow(tr, unit, now);
      } else if (changed === null || changed.has(unit.id)) {
        this.fillUnitRow(tr, unit, now);
      }
      if (tr === cursor) cursor = cursor.nextSibling;
      else body.insertBefore(tr, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    for (const id of [...b.rows.keys()]) if (!keep.has(id)) b.rows.delete(id);

    // Summary, a count per status (also the filter's choices), and the empty state.
    const counts = new Map();
    for (const u of all) counts.set(u.status, (counts.get(u.status) || 0) + 1);
    this.$("units-summary").textContent = b.filter
      ? t("units.summary_filtered", { n: shown.length, total: all.length })
      : t("units.summary", { n: all.length });
    const statuses = [...new Set([...UNIT_STATUSES, ...counts.keys()])].filter((s) => s);
    const chips = this.$("units-counts");
    chips.replaceChildren(...statuses.filter((s) => counts.get(s)).map((s) => el("span", {
      class: `status-chip us-${classToken(s, UNIT_STATUSES)}`, dataset: { status: s },
    }, this.vocab("unit_status", s, "chip-label"), el("span", { class: "chip-count", text: String(counts.get(s)) }))));
    const select = this.$("units-filter-status");
    select.replaceChildren(el("option", { value: "", text: t("units.all_statuses") }),
      ...statuses.map((s) => el("option", { value: s, text: label("unit_status", s) })));
    select.value = b.filter;
    const empty = this.$("units-empty");
    empty.hidden = shown.length > 0;
    empty.textContent = b.filter ? t("units.empty_filtered") : t("units.empty");
    this.$("units-board").hidden = shown.length === 0;
  }

  fillUnitRow(tr, unit, now) {
    const status = String(unit.status ?? "");
    tr.dataset.unitId = unit.id;
    tr.dataset.status = status;
    const d = unit.dispatch && typeof unit.dispatch === "object" && unit.dispatch.id !== undefined ? unit.dispatch : null;
    tr.dataset.dispatchId = d ? String(d.id) : "";
    const cell = (key, ...children) => el("td", { class: `col-${key}`, dataset: { label: t(`units.col.${key}`) } }, ...children);
    let dispatch = el("span", { class: "unit-dispatch-none", text: t("field.none") });
    if (d) {
      const incidentId = String(d.incident_id ?? "");
      const inc = this.state.incidents.get(incidentId);
      dispatch = el("span", { class: "unit-dispatch" },
        el("button", { type: "button", class: "btn btn-link unit-dispatch-link", dataset: { incidentId } },
          t("units.dispatch_incident", { id: incidentId }),
          inc && inc.title ? el("span", { class: "unit-dispatch-title", translate: "no", text: ` ${inc.title}` }) : null),
        el("span", { class: `dispatch-status ds-${classToken(d.status, DISPATCH_STATUSES)}`, text: label("dispatch_status", d.status) }));
    }
    const positionMs = timeOf(unit.position_at);
    const age = positionMs
      ? el("span", { class: "unit-age", dataset: { positionAt: String(positionMs) } })
      : el("span", { class: "unit-age is-none", text: t("units.no_position") });
    tr.replaceChildren(
      cell("unit",
        el("span", { class: "unit-callsign", translate: "no", text: String(unit.callsign ?? unit.id) }),
        el("span", { class: "unit-id", translate: "no", text: String(unit.id) })),
      cell("type", this.vocab("unit_type", unit.type, "unit-type")),
      cell("status", el("span", { class: `unit-status us-${classToken(status, UNIT_STATUSES)}` }, this.vocab("unit_status", status, ""))),
      cell("dispatch", dispatch),
      cell("position", age, el("span", { class: "stale-badge", hidden: true, text: t("units.stale"),
        title: t("units.stale_title", { n: Math.round(this.positionMaxAgeMs() / 60000) }) })),
      cell("district", el("span", { translate: "no", text: this.districtLabel(unit.district) })));
    if (positionMs) this.paintAge(tr, now);
  }

  paintAge(tr, now) {
    const node = tr.querySelector(".unit-age[data-position-at]");
    if (!node) return;
    const at = Number(node.dataset.positionAt);
    node.textContent = formatAge(at, now);
    const stale = now - at > this.positionMaxAgeMs();
    node.classList.toggle("is-stale", stale);
    tr.querySelector(".stale-badge").hidden = !stale;
  }

  /** Position ages tick every second while the board is on screen. */
  tickUnits(now) {
    for (const tr of this.boards.units.rows.values()) this.paintAge(tr, now);
  }

  // ---- depots board ----

  async loadDepots() {
    const b = this.boards.depots;
    clearTimeout(b.timer);
    b.timer = null;
    const resp = await this.fetchBoard(b, "/api/depots", () => this.renderDepotsStatus());
    if (!resp) return;
    if (resp.status === 200 && resp.body && Array.isArray(resp.body.depots)) b.data = resp.body.depots;
    this.renderDepots();
  }

  /** Supplies move with dispatches: refetch shortly after one, if the board is on screen (it refetches when opened anyway). */
  depotsMayHaveChanged() {
    const b = this.boards.depots;
    if (this.tab !== "depots" || b.timer) return;
    b.timer = setTimeout(() => this.loadDepots(), DEPOTS_AFTER_DISPATCH_MS);
  }

  minimums() {
    return this.config && this.config.stock_minimums && typeof this.config.stock_minimums === "object"
      ? this.config.stock_minimums : {};
  }

  depotWarnings(depots) {
    const today = utcDate(Date.now());
    return depots.filter((d) => depotStock(d, this.minimums(), today).warnings > 0).length;
  }

  renderDepotsStatus() {
    this.boardStatus(this.$("depots-status"), this.boards.depots, DEPOTS_EVERY_MS);
  }

  renderDepots() {
    const b = this.boards.depots;
    this.renderDepotsStatus();
    const severity = this.config && this.config.stock_reference_severity ? this.config.stock_reference_severity : "Severe";
    this.$("depots-rule").textContent = t("depots.rule", { severity: label("severity", severity) });
    const board = this.$("depots-board");
    if (!b.data) {
      board.replaceChildren();
      this.$("depots-summary").textContent = "";
      return;
    }
    const today = utcDate(Date.now());
    const minimums = this.minimums();
    const cards = b.data.map((depot) => ({ depot, ...depotStock(depot, minimums, today) }));
    // Depots that need attention first, then by id.
    cards.sort((x, y) => ((y.warnings > 0) - (x.warnings > 0)) || String(x.depot.id).localeCompare(String(y.depot.id)));
    const low = cards.filter((c) => c.warnings > 0).length;
    this.$("depots-summary").textContent = t("depots.summary", { n: cards.length, low });
    if (!cards.length) {
      board.replaceChildren(el("p", { class: "board-empty", text: t("depots.empty") }));
      this.renderBadges();
      return;
    }
    board.replaceChildren(...cards.map(({ depot, items, warnings }) => {
      const flag = warnings
        ? el("span", { class: "depot-flag is-warn", text: warnings === 1 ? t("depots.warning_one") : t("depots.warnings", { n: warnings }) })
        : el("span", { class: "depot-flag", text: t("depots.all_ok") });
      const head = el("div", { class: "depot-head" },
        el("h3", { class: "depot-name", translate: "no", text: String(depot.name ?? depot.id) }),
        el("span", { class: "depot-meta", translate: "no", text: `${depot.id} · ${this.districtLabel(depot.district)}` }),
        flag);
      let body;
      if (!items.length) {
        body = el("p", { class: "board-empty", text: t("depots.no_stock") });
      } else {
        const th = (key) => el("th", { scope: "col", text: t(`depots.col.${key}`) });
        const unitOf = (s) => this.vocab("supply_unit", s.unit, "stock-unit");
        body = el("table", { class: "stock-table" },
          el("thead", {}, el("tr", {}, th("item"), th("quantity"), th("minimum"), th("expires"), th("state"))),
          el("tbody", {}, ...items.map((s) => el("tr", { class: `stock-item lvl-${s.level}`, dataset: { item: String(s.item), level: s.level } },
            el("td", { class: "stock-name" }, this.vocab("supply_item", s.item, "")),
            el("td", { class: "num" }, `${s.quantity ?? ""} `, unitOf(s)),
            el("td", { class: "num" }, s.minimum === null ? t("field.none") : `${s.minimum} `, s.minimum === null ? null : unitOf(s)),
            el("td", { class: "stock-expires", text: s.expires_on ? String(s.expires_on) : t("field.none") }),
            el("td", {}, el("span", { class: `level-badge lvl-${s.level}`, text: t(`depots.level.${s.level}`) }))))));
      }
      return el("section", { class: `depot${warnings ? " has-warnings" : ""}`, dataset: { depotId: String(depot.id), low: warnings ? "true" : "false" } }, head, body);
    }));
    this.renderBadges();
  }

  // ---- dashboard ----

  async loadDashboard() {
    const b = this.boards.dashboard;
    const gen = ++b.gen;
    b.loading = true;
    this.renderDashboardStatus();
    const now = Date.now();
    // Counts by kind come with the kind grouping, counts by district need their own.
    const [kind, district] = await Promise.all([
      this.api.request("GET", statsPath(b.days, now, "kind")),
      this.api.request("GET", statsPath(b.days, now, "district")),
    ]);
    if (gen !== b.gen || this.view !== "console") return;
    b.loading = false;
    b.at = Date.now();
    if (kind.status === 401 || district.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    const ok = (r) => r.status === 200 && r.body && typeof r.body === "object";
    b.resp = ok(kind) ? district : kind;
    if (ok(kind) && ok(district)) {
      b.kind = kind.body;
      b.district = district.body;
    }
    this.renderDashboard();
  }

  renderDashboardStatus() {
    this.boardStatus(this.$("dashboard-status"), this.boards.dashboard, DASHBOARD_EVERY_MS);
  }

  renderDashboard() {
    const b = this.boards.dashboard;
    this.renderDashboardStatus();
    const root = this.$("dashboard");
    root.dataset.state = b.loading && !b.kind ? "loading" : (b.resp && b.resp.status !== 200 ? "error" : (b.kind ? "ready" : "idle"));
    if (!b.kind || !b.district || this.tab !== "dashboard") {
      if (!b.kind) root.replaceChildren();
      return;
    }
    const stats = b.kind;
    const rows = responseRows(stats);
    const count = Number(stats.count) || 0;
    const goal = Math.round((Number(stats.targets && stats.targets.goal) || 0.9) * 100);

    const statusChips = el("div", { class: "status-chips" },
      ...Object.entries(stats.by_status || {}).map(([s, n]) => el("span", { class: "status-chip", dataset: { status: s } },
        this.vocab("status", s, "chip-label"), el("span", { class: "chip-count", text: String(n) }))));
    const summary = el("div", { class: "dash-card dash-summary" },
      el("p", { class: "dash-count", text: count === 1 ? t("dash.count_one") : t("dash.count", { n: count }) }),
      count ? statusChips : el("p", { class: "board-empty", text: t("dash.empty") }));

    const slaCards = el("div", { class: "sla-cards" }, ...rows.map((r) => {
      const met = r.met === null ? "none" : String(r.met);
      const head = r.fraction === null
        ? t("dash.sla_none")
        : t("dash.sla_within", { pct: Math.round(r.fraction * 100), target: t("dash.seconds", { n: r.target }) });
      return el("div", { class: `sla-card met-${met}`, dataset: { sla: r.key, met } },
        el("h3", { class: "sla-name", text: t(`dash.sla.${r.key}`) }),
        el("p", { class: "sla-figure", text: head }),
        r.measured ? el("p", { class: "sla-measured", text: t("dash.sla_measured", { within: r.within, measured: r.measured }) }) : null,
        r.met === null ? null : el("span", { class: "sla-verdict", text: r.met ? t("dash.sla_met") : t("dash.sla_missed") }),
        r.breaches.length
          ? el("p", { class: "sla-breaches", text: t("dash.breaches", { list: r.breaches.slice(0, 10).map((id) => `#${id}`).join(", ") + (r.breaches.length > 10 ? " …" : "") }) })
          : null);
    }));

    const holder = (name, titleKey, note) => el("section", { class: `dash-card dash-chart`, dataset: { chartHolder: name } },
      el("h3", { class: "dash-heading", text: t(titleKey) }), note ? el("p", { class: "board-note", text: note }) : null);
    const response = holder("response", "dash.response_title", t("dash.response_note", { goal }));
    const byKind = holder("kind", "dash.by_kind");
    const byDistrict = holder("district", "dash.by_district");
    root.replaceChildren(summary, slaCards, response, byKind, byDistrict, this.metricsTable(stats));
    b.width = root.clientWidth;

    // Charts are drawn to their card's inner width, so their text stays the page's size.
    const widthOf = (node) => Math.max(260, Math.floor(node.clientWidth - 2 * (parseFloat(getComputedStyle(node).paddingLeft) || 0)));
    response.append(this.responseChart(rows, widthOf(response)), this.responseLegend());
    const kindRows = countRows(stats.groups).map((r) => ({
      key: r.key ?? "", value: r.count,
      label: r.others ? t("dash.others", { n: r.others }) : label("kind", r.key),
      raw: !r.others && !has(`kind.${r.key}`),
    }));
    byKind.append(this.barChart("kind", kindRows, widthOf(byKind)));
    const districtRows = countRows(b.district.groups).map((r) => ({
      key: r.key ?? "", value: r.count,
      label: r.others ? t("dash.others", { n: r.others }) : (r.key === null ? t("dash.no_district") : this.districtLabel(r.key)),
      raw: !r.others && r.key !== null, // a place name, as the data spells it
    }));
    byDistrict.append(this.barChart("district", districtRows, widthOf(byDistrict)));
  }

  metricsTable(stats) {
    const metrics = stats.overall && stats.overall.metrics ? stats.overall.metrics : {};
    const secs = (v) => (v === null || v === undefined ? t("field.none") : t("dash.seconds", { n: Math.round(Number(v)) }));
    const th = (key) => el("th", { scope: "col", class: key === "metric" ? undefined : "num", text: t(`dash.col.${key}`) });
    return el("section", { class: "dash-card dash-metrics" },
      el("h3", { class: "dash-heading", text: t("dash.metrics_title") }),
      el("table", { class: "board-table metrics-table" },
        el("thead", {}, el("tr", {}, th("metric"), th("count"), th("p50"), th("p90"))),
        el("tbody", {}, ...Object.entries(metrics).map(([name, m]) => el("tr", { dataset: { metric: name } },
          el("td", {}, this.vocab("metric", name, "")),
          el("td", { class: "num", text: String(m && m.count !== undefined ? m.count : 0) }),
          el("td", { class: "num", text: secs(m && m.p50) }),
          el("td", { class: "num", text: secs(m && m.p90) }))))));
  }

  /**
   * Horizontal bars, one per row, on a shared 0..nice-max axis: plain SVG built
   * with DOM calls (no library, nothing for a strict CSP to refuse).
   * Hooks: svg.chart[data-chart], rect.bar[data-key][data-value].
   */
  barChart(name, rows, width) {
    const rowH = 26;
    const barH = 16;
    const top = 6;
    const axisH = 22;
    const labelW = Math.round(Math.min(180, Math.max(90, width * 0.32)));
    const valueW = 40;
    const plotW = Math.max(60, width - labelW - valueW - 10);
    const scale = niceScale(Math.max(0, ...rows.map((r) => r.value)), { ticks: Math.max(2, Math.floor(plotW / 60)), integer: true });
    const height = top + Math.max(1, rows.length) * rowH + axisH;
    const chart = svgEl("svg", { class: `chart chart-${name}`, "data-chart": name, viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
    this.axis(chart, scale, labelW, plotW, top, top + Math.max(1, rows.length) * rowH, height - 6, (v) => String(v));
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const w = scaleLength(r.value, scale.max, plotW);
      chart.append(svgEl("g", { class: "bar-row" },
        svgEl("title", { text: `${r.label}: ${r.value}` }),
        svgEl("text", { class: "bar-label", x: labelW - 8, y: y + rowH / 2, "text-anchor": "end", "dominant-baseline": "central",
          translate: r.raw ? "no" : undefined, text: fitLabel(r.label, Math.floor((labelW - 10) / 7)) }),
        svgEl("rect", { class: "bar", x: labelW, y: y + (rowH - barH) / 2, width: w, height: barH, rx: 2, "data-key": r.key, "data-value": r.value }),
        svgEl("text", { class: "bar-value", x: labelW + w + 5, y: y + rowH / 2, "dominant-baseline": "central", text: String(r.value) })));
    });
    return chart;
  }

  /** Grid lines and tick labels of a horizontal axis from x0 over `plotW`. */
  axis(chart, scale, x0, plotW, y1, y2, labelY, format) {
    for (const v of scale.ticks) {
      const x = x0 + scaleLength(v, scale.max, plotW);
      chart.append(
        svgEl("line", { class: v === 0 ? "axis" : "grid", x1: x, x2: x, y1: y1 - 2, y2 }),
        svgEl("text", { class: "tick", x, y: labelY, "text-anchor": "middle", text: format(v) }));
    }
  }

  /**
   * Response times: per SLA target its interval's p50 and p90 bars, each drawn
   * against its own target, so the red target line is the same 100 % mark on
   * every row: a 60 s and a 240 s target share one chart and each reads at a
   * glance (on one seconds axis the short one would be a sliver). The bars are
   * labelled in seconds.
   * Hooks: svg.chart[data-chart=response] g[data-sla] with rect.bar[data-stat=p50|p90][data-value] and line.target[data-target].
   */
  responseChart(rows, width) {
    const rowH = 44;
    const barH = 13;
    const top = 8;
    const axisH = 22;
    const labelW = Math.round(Math.min(180, Math.max(90, width * 0.3)));
    const valueW = 52;
    const plotW = Math.max(60, width - labelW - valueW - 10);
    const ratio = (value, r) => (value === null || !(r.target > 0) ? null : value / r.target);
    const ratios = rows.flatMap((r) => [ratio(r.p50, r), ratio(r.p90, r)]).filter((v) => v !== null);
    // At least a little past the target, so the line never sits on the chart's edge.
    const scale = niceScale(Math.max(1.2, ...ratios), { ticks: Math.max(2, Math.floor(plotW / 70)) });
    const height = top + Math.max(1, rows.length) * rowH + axisH;
    const chart = svgEl("svg", { class: "chart chart-response", "data-chart": "response", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
    const secs = (v) => t("dash.seconds", { n: Math.round(v) });
    this.axis(chart, scale, labelW, plotW, top, top + Math.max(1, rows.length) * rowH, height - 6, (v) => `${Math.round(v * 100)}%`);
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const g = svgEl("g", { class: "response-row", "data-sla": r.key },
        svgEl("text", { class: "bar-label", x: labelW - 8, y: y + rowH / 2, "text-anchor": "end", "dominant-baseline": "central",
          text: fitLabel(t(`dash.sla.${r.key}`), Math.floor((labelW - 10) / 7)) }));
      [["p50", r.p50, y + 6], ["p90", r.p90, y + 6 + barH + 4]].forEach(([stat, value, by]) => {
        const share = ratio(value, r);
        if (share === null) return;
        const w = scaleLength(share, scale.max, plotW);
        g.append(
          svgEl("rect", { class: `bar bar-${stat}`, x: labelW, y: by, width: w, height: barH, rx: 2, "data-stat": stat, "data-value": value }),
          svgEl("text", { class: "bar-value", x: labelW + w + 5, y: by + barH / 2, "dominant-baseline": "central", text: secs(value) }));
      });
      if (r.target > 0) {
        const x = labelW + scaleLength(1, scale.max, plotW);
        g.append(
          svgEl("line", { class: "target", x1: x, x2: x, y1: y + 2, y2: y + rowH - 4, "data-target": r.target }),
          svgEl("text", { class: "target-label", x: x + 4, y: y + 2, "dominant-baseline": "hanging", text: secs(r.target) }));
      }
      chart.append(g);
    });
    return chart;
  }

  responseLegend() {
    const item = (cls, key) => el("span", { class: "legend-item" }, el("span", { class: `legend-swatch ${cls}` }), t(key));
    return el("p", { class: "chart-legend" },
      item("sw-p50", "dash.legend_p50"), item("sw-p90", "dash.legend_p90"), item("sw-target", "dash.legend_target"));
  }

  // ---- rejected messages (administrators) ----

  async loadDeadLetters() {
    if (this.role !== "admin") return; // the server would say 403; the tab is not shown anyway
    const b = this.boards.dead;
    const resp = await this.fetchBoard(b, `/api/dead-letters?limit=${DEAD_LETTERS_LIMIT}`, () => this.renderDeadLettersStatus());
    if (!resp) return;
    if (resp.status === 200 && resp.body && Array.isArray(resp.body.dead_letters)) b.data = resp.body.dead_letters;
    this.renderDeadLetters();
  }

  renderDeadLettersStatus() {
    this.boardStatus(this.$("dead-letters-status"), this.boards.dead, DEAD_LETTERS_EVERY_MS);
  }

  renderDeadLetters() {
    const b = this.boards.dead;
    this.renderDeadLettersStatus();
    const rows = b.data || [];
    this.$("dead-letters-summary").textContent = b.data ? t("dead.summary", { n: rows.length }) : "";
    const empty = this.$("dead-letters-empty");
    empty.hidden = !b.data || rows.length > 0;
    empty.textContent = t("dead.empty");
    this.$("dead-letters").hidden = rows.length === 0;
    const cell = (key, ...children) => el("td", { class: `col-${key}`, dataset: { label: t(`dead.col.${key}`) } }, ...children);
    this.$("dead-letters-rows").replaceChildren(...rows.filter((r) => r && typeof r === "object").map((r) => {
      const payload = String(r.payload ?? "");
      const cut = payload.length > PAYLOAD_SHOWN;
      return el("tr", { class: "dead-letter", dataset: { id: String(r.id ?? ""), source: String(r.source ?? "") } },
        cell("time", fmtTime(r.received_at)),
        cell("source", el("span", { translate: "no", text: String(r.source ?? "") })),
        cell("topic", el("code", { translate: "no", text: String(r.topic ?? "") })),
        // The reason is the server's own words (sensors/alarms.py, command/ingest.py).
        cell("reason", el("span", { class: "dead-reason", translate: "no", text: String(r.reason ?? "") })),
        cell("payload",
          el("code", { class: "dead-payload", translate: "no", text: cut ? payload.slice(0, PAYLOAD_SHOWN) : payload }),
          cut ? el("span", { class: "dead-more", text: t("dead.more", { n: payload.length - PAYLOAD_SHOWN }) }) : null,
          el("span", { class: "dead-size", text: t("dead.size", { n: r.payload_size ?? payload.length }) })));
    }));
  }

  // ---- language ----

  relabel() {
    this.relabelChrome();
    document.title = t("app.title");
    document.documentElement.lang = getLang();
    this.renderUser();
    this.renderFilters();
    this.renderNav();
    this.relabelBoards();
    if (this.map) {
      this.buildLayersControl();
      this.buildLegend();
      for (const { node, district } of this.districtLabels) node.textContent = this.districtName(district);
      this.map.eachLayer((layer) => {
        if (layer.isPopupOpen && layer.isPopupOpen()) layer.getPopup().update();
      });
      this.refreshQueueContent();
      this.renderQueue(null);
    }
    this.renderDetail();
  }

  // ---- incident detail ----

  bindDetail() {
    this.$("incident-detail-close").addEventListener("click", () => {
      const id = this.detail ? this.detail.id : null;
      this.closeDetail();
      const li = id ? this.queueItems.get(id) : null;
      if (li) li.focus({ preventScroll: false });
    });
    this.$("incident-detail").addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      // Escape first folds an open inline form, then closes the panel.
      const form = e.target.closest ? e.target.closest("form[data-form]") : null;
      if (form && this.detail && this.cancelForm(form.dataset.form)) return;
      this.$("incident-detail-close").click();
    });
    // One set of listeners for everything the panel renders (it is rebuilt often).
    const body = this.$("incident-detail-body");
    body.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-act]");
      if (button && !button.disabled && this.detail) this.onDetailAction(button.dataset.act, button.dataset);
    });
    body.addEventListener("submit", (e) => {
      e.preventDefault();
      if (this.detail) this.onDetailSubmit(e.target.dataset.form);
    });
    body.addEventListener("change", (e) => {
      const key = e.target.dataset ? e.target.dataset.pick : null;
      if (!key || !this.detail) return;
      this.detail.picks.set(key, e.target.checked);
      this.renderDetail();
    });
    body.addEventListener("input", (e) => {
      const field = e.target.dataset ? e.target.dataset.field : null;
      if (field && this.detail) this.detail.forms[field] = e.target.value;
    });
  }

  /** Open the panel for an incident and fetch its detail and recommendation. */
  openDetail(id) {
    const key = String(id);
    if (this.detail && this.detail.id === key) return; // already open (queue click, then popup)
    this.closeDetail();
    this.detail = {
      id: key, incident: null, rec: null, incResp: null, recResp: null, loading: true,
      busy: new Set(), // requests in flight, by action key: their buttons are disabled
      errors: {}, // slot (dispatch, dispatches, status, tasks) -> the last failure's message
      picks: new Map(), // dispatch checkbox key -> ticked, where the commander changed the default
      forms: { task_due: "30" }, // what is typed in the panel's inputs, kept across re-renders
      pendingStatus: null, // a status that waits for its reason
      pendingDone: null, // the task id that waits for its result
      dispatchResult: null, // the units the last "Dispatch recommended" sent
      offers: new Map(), // dispatch id -> the next-best unit offered when it went overdue
    };
    const panel = this.$("incident-detail");
    panel.dataset.incidentId = key;
    panel.hidden = false;
    this.$("side-panel").classList.add("detail-open");
    this.renderDetail();
    panel.scrollTop = 0;
    this.fetchDetail();
  }

  closeDetail() {
    clearTimeout(this.detailTimer);
    this.detailTimer = null;
    this.detail = null;
    this.detailGen += 1;
    const panel = this.$("incident-detail");
    panel.hidden = true;
    delete panel.dataset.incidentId;
    delete panel.dataset.state;
    this.$("incident-detail-body").replaceChildren();
    this.$("side-panel").classList.remove("detail-open");
  }

  /** Refetch soon, but at most once per DETAIL_REFRESH_MS however many updates arrive. */
  scheduleDetailRefresh() {
    if (!this.detail || this.detailTimer) return;
    const wait = Math.max(0, this.detailLastFetch + DETAIL_REFRESH_MS - Date.now());
    this.detailTimer = setTimeout(() => {
      this.detailTimer = null;
      this.fetchDetail();
    }, wait);
  }

  async fetchDetail() {
    const d = this.detail;
    if (!d) return;
    const gen = ++this.detailGen;
    this.detailLastFetch = Date.now();
    d.loading = true;
    this.renderDetail();
    const path = `/api/incidents/${encodeURIComponent(d.id)}`;
    const [inc, rec] = await Promise.all([
      this.api.request("GET", path),
      this.api.request("GET", `${path}/recommendation`),
    ]);
    if (gen !== this.detailGen || this.detail !== d) return; // closed, or a newer fetch is on its way
    if (inc.status === 401 || rec.status === 401) {
      this.showLogin(t("login.expired"));
      return;
    }
    d.loading = false;
    // A failed refresh keeps what we had and says why.
    d.incResp = inc;
    if (inc.status === 200 && inc.body && typeof inc.body === "object") {
      d.incident = inc.body;
      for (const [dispatchId, offer] of offersFromTimeline(inc.body.timeline)) d.offers.set(dispatchId, offer);
    }
    d.recResp = rec;
    if (rec.status === 200 && rec.body && typeof rec.body === "object") d.rec = rec.body;
    this.renderDetail();
  }

  /**
   * A dispatch.* or task.* event about the open incident: merge it into what the
   * panel shows now, and refetch soon for what it implies (the timeline, a
   * recommendation without the units just sent).
   */
  applyDetailActivity(name, data) {
    const d = this.detail;
    if (!d) return;
    if (name === "dispatch.overdue") d.offers.set(String(data.id), data.offer && data.offer.unit_id ? data.offer : null);
    if (d.incident) {
      if (name.startsWith("dispatch.")) {
        const { offer: _offer, ...dispatch } = data;
        d.incident = { ...d.incident, dispatches: upsertById(d.incident.dispatches, dispatch) };
      } else {
        d.incident = { ...d.incident, tasks: upsertById(d.incident.tasks, data) };
      }
    }
    this.scheduleDetailRefresh();
  }

  /** The error text for a failed detail fetch, or null when it worked. */
  detailError(resp, fallbackKey) {
    if (!resp || (resp.status === 200 && resp.body && typeof resp.body === "object")) return null;
    return resp.status === 0 ? t("detail.network") : errorMessage(resp.body, fallbackKey);
  }

  /** Whether this account may act on incidents (unknown role: show the controls, the server decides). */
  canAct() {
    return !this.role || ACTOR_ROLES.includes(this.role);
  }

  unitCallsign(unitId) {
    const unit = unitId === null || unitId === undefined ? null : this.state.units.get(String(unitId));
    return unit && unit.callsign ? String(unit.callsign) : String(unitId ?? t("field.none"));
  }

  renderDetail() {
    const d = this.detail;
    if (!d) return;
    const panel = this.$("incident-detail");
    const body = this.$("incident-detail-body");
    // The panel is rebuilt on every change: keep the commander's place, focus and caret.
    const active = document.activeElement;
    const focusKey = active && body.contains(active) && active.dataset ? active.dataset.focusKey || null : null;
    let caret = null;
    try {
      if (focusKey && typeof active.selectionStart === "number") caret = [active.selectionStart, active.selectionEnd];
    } catch (_) { /* inputs without a caret */ }
    const scrollTop = panel.scrollTop;

    const incError = this.detailError(d.incResp, "detail.load_failed");
    const recError = this.detailError(d.recResp, "detail.rec_failed");
    panel.dataset.state = d.loading ? "loading" : (incError || recError ? "error" : "ready");
    // Live fields (from the feed) over the fetched ones: they are at least as fresh.
    const live = this.state.incidents.get(d.id);
    const info = { ...(d.incident || {}), ...(live || {}) };
    const sev = classToken(info.severity, SEVERITIES);
    const nodes = [];
    const haveAny = Boolean(d.incident || live);

    nodes.push(el("div", { class: `detail-head sev-${sev}` },
      el("span", { class: "sev-badge", text: label("severity", info.severity) }),
      el("h3", { class: "detail-title", text: haveAny ? (info.title || label("kind", info.kind)) : t("detail.label") })));
    if (d.loading) {
      nodes.push(el("p", { class: "detail-loading", role: "status",
        text: d.incident || d.rec ? t("detail.refreshing") : t("detail.loading") }));
    }
    if (incError) nodes.push(el("p", { class: "detail-error", role: "alert", text: incError }));

    if (haveAny) {
      const dl = el("dl", { class: "detail-fields" });
      const rows = [
        ["field.severity", label("severity", info.severity)],
        ["field.status", label("status", info.status)],
        ["field.kind", label("kind", info.kind)],
        ["field.district", this.districtLabel(info.district)],
        ["field.alarm_count", info.alarm_count ?? 0],
        ["detail.sensor_count", info.sensor_count ?? t("field.none")],
        ["field.opened_at", fmtTime(info.opened_at)],
        ["field.updated_at", fmtTime(info.updated_at)],
      ];
      for (const [key, value] of rows) dl.append(el("dt", { text: t(key) }), el("dd", { text: String(value) }));
      nodes.push(dl);
      if (this.canAct() && info.status) nodes.push(this.detailStatus(d, info.status));
    }

    const dispatches = d.incident ? list(d.incident.dispatches) : [];
    if (d.incident) nodes.push(this.detailDispatches(d, dispatches, info.status));
    nodes.push(this.detailRecommendation(d, recError, dispatches, info.status));
    if (d.incident) nodes.push(this.detailTasks(d, list(d.incident.tasks)));
    if (d.incident) nodes.push(this.detailAlarms(d.incident.alarms));
    const places = d.incident || d.rec;
    if (places) {
      nodes.push(this.detailPlaces("hazards", "detail.hazards", places.hazards, "hazard_kind"));
      nodes.push(this.detailPlaces("sites", "detail.sites", places.sites, "site_kind"));
    }
    if (d.incident) nodes.push(this.detailTimeline(list(d.incident.timeline), list(d.incident.tasks)));
    body.replaceChildren(...nodes);

    panel.scrollTop = scrollTop;
    if (focusKey) this.focusDetail(focusKey, caret);
    this.tickDetail();
  }

  /** Focus the panel element with this data-focus-key (after a rebuild, or to open a form). */
  focusDetail(focusKey, caret) {
    const node = [...this.$("incident-detail-body").querySelectorAll("[data-focus-key]")]
      .find((n) => n.dataset.focusKey === focusKey);
    if (!node) return;
    node.focus({ preventScroll: true });
    if (caret) {
      try {
        node.setSelectionRange(caret[0], caret[1]);
      } catch (_) { /* number inputs have no caret */ }
    }
  }

  /** Countdowns (acknowledgement deadlines, task due times) tick without a rebuild. */
  tickDetail() {
    if (!this.detail) return;
    const now = Date.now();
    const body = this.$("incident-detail-body");
    for (const node of body.querySelectorAll("[data-deadline]")) {
      const left = Number(node.dataset.deadline) - now;
      node.textContent = left > 0 ? t("dispatches.ack_in", { t: formatCountdown(left) }) : t("dispatches.ack_passed");
      node.classList.toggle("is-late", left <= 0);
    }
    for (const node of body.querySelectorAll("[data-due]")) {
      const left = Number(node.dataset.due) - now;
      node.textContent = left > 0 ? t("tasks.due_in", { t: formatCountdown(left) }) : t("tasks.late", { t: formatCountdown(-left) });
      node.classList.toggle("is-late", left <= 0);
    }
  }

  detailSection(name, headingKey, ...children) {
    return el("section", { class: `detail-section detail-${name}`, dataset: { section: name } },
      el("h4", { class: "detail-heading", text: t(headingKey) }), ...children);
  }

  actionError(slot, d) {
    const message = d.errors[slot];
    return message ? el("p", { class: `action-error ${slot}-error`, role: "alert", text: message }) : null;
  }

  // ---- acting on the incident ----

  onDetailAction(act, data) {
    const d = this.detail;
    switch (act) {
      case "status": {
        const action = data.action;
        if (!lifecycleActions(this.detailStatusOf(d)).some((a) => a.action === action && a.needsReason)) {
          this.postStatus(action, null);
          return;
        }
        d.pendingStatus = action;
        d.forms.reason = "";
        d.errors.status = null;
        this.renderDetail();
        this.focusDetail("reason");
        return;
      }
      case "dispatch":
        this.sendRecommended();
        return;
      case "offer":
        this.sendOffer(data.dispatchId);
        return;
      case "callback":
        this.callBack(data.dispatchId);
        return;
      case "task-done":
        d.pendingDone = data.taskId;
        d.forms.task_result = "";
        d.errors.tasks = null;
        this.renderDetail();
        this.focusDetail(`result:${data.taskId}`);
        return;
      case "form-cancel":
        this.cancelForm(data.form);
        return;
      default:
        break;
    }
  }

  onDetailSubmit(form) {
    const d = this.detail;
    if (form === "reason" && d.pendingStatus) {
      const reason = String(d.forms.reason ?? "").trim();
      if (!reason) {
        d.errors.status = t("action.reason_needed");
        this.renderDetail();
        this.focusDetail("reason");
        return;
      }
      this.postStatus(d.pendingStatus, reason);
    } else if (form === "task-add") {
      this.addTask();
    } else if (form === "task-result" && d.pendingDone) {
      this.finishTask(d.pendingDone);
    }
  }

  /** Fold an inline form; false when that form was not open. */
  cancelForm(form) {
    const d = this.detail;
    if (form === "reason" && d.pendingStatus) {
      const action = d.pendingStatus;
      d.pendingStatus = null;
      d.errors.status = null;
      this.renderDetail();
      this.focusDetail(`status:${action}`);
      return true;
    }
    if (form === "task-result" && d.pendingDone) {
      const id = d.pendingDone;
      d.pendingDone = null;
      d.errors.tasks = null;
      this.renderDetail();
      this.focusDetail(`task-done:${id}`);
      return true;
    }
    return false;
  }

  detailStatusOf(d) {
    const live = this.state.incidents.get(d.id);
    return (live && live.status) || (d.incident && d.incident.status) || null;
  }

  /**
   * Send a request for the open incident: its button is disabled while it is in
   * flight (a second click sends nothing), a failure's message (the server's own
   * words) goes to the error box of `slot`, and the panel refetches after.
   */
  async act(d, key, slot, method, path, payload, onOk) {
    if (d.busy.has(key)) return false;
    d.busy.add(key);
    d.errors[slot] = null;
    if (this.detail === d) this.renderDetail();
    const resp = await this.api.request(method, path, payload);
    d.busy.delete(key);
    if (resp.status === 401) {
      this.showLogin(t("login.expired"));
      return false;
    }
    const ok = resp.status >= 200 && resp.status < 300 && resp.body && typeof resp.body === "object";
    if (ok) onOk(resp.body);
    else d.errors[slot] = resp.status === 0 ? t("detail.network") : errorMessage(resp.body, "action.failed");
    if (this.detail !== d) return ok;
    this.renderDetail();
    if (resp.status !== 0) this.fetchDetail(); // a refusal (409) often means what we show is stale
    return ok;
  }

  /** Merge a POST .../dispatches answer ({dispatches, incident, tasks}) into the panel. */
  mergeDispatched(d, body) {
    if (!d.incident) return;
    let dispatches = d.incident.dispatches;
    for (const x of list(body.dispatches)) dispatches = upsertById(dispatches, x);
    let tasks = d.incident.tasks;
    for (const x of list(body.tasks)) tasks = upsertById(tasks, x);
    const incident = body.incident && typeof body.incident === "object" ? body.incident : {};
    d.incident = { ...d.incident, ...incident, dispatches, tasks };
  }

  sendRecommended() {
    const d = this.detail;
    if (!d.rec) return;
    const payload = dispatchBody(dispatchChoices(d.rec, d.incident ? d.incident.dispatches : []), d.picks);
    if (!payload.units.length) return;
    d.dispatchResult = null;
    this.act(d, "dispatch", "dispatch", "POST", `/api/incidents/${encodeURIComponent(d.id)}/dispatches`, payload, (body) => {
      d.dispatchResult = list(body.dispatches).map((x) => ({ unit_id: x.unit_id, eta_s: x.eta_s }));
      d.picks.clear(); // the next recommendation starts from its own defaults
      this.mergeDispatched(d, body);
    });
  }

  sendOffer(dispatchId) {
    const d = this.detail;
    const offer = d.offers.get(String(dispatchId));
    if (!offer) return;
    this.act(d, `offer:${dispatchId}`, "dispatches", "POST", `/api/incidents/${encodeURIComponent(d.id)}/dispatches`,
      offerBody(offer), (body) => this.mergeDispatched(d, body));
  }

  callBack(dispatchId) {
    const d = this.detail;
    this.act(d, `callback:${dispatchId}`, "dispatches", "POST", `/api/dispatches/${encodeURIComponent(dispatchId)}/status`,
      { status: "cancelled" }, (body) => {
        if (d.incident && body.dispatch) d.incident = { ...d.incident, dispatches: upsertById(d.incident.dispatches, body.dispatch) };
      });
  }

  postStatus(action, reason) {
    const d = this.detail;
    const payload = reason ? { status: action, reason } : { status: action };
    this.act(d, "status", "status", "POST", `/api/incidents/${encodeURIComponent(d.id)}/status`, payload, (body) => {
      d.pendingStatus = null;
      d.forms.reason = "";
      if (d.incident) d.incident = { ...d.incident, ...body };
    });
  }

  addTask() {
    const d = this.detail;
    const checked = taskRequest({ title: d.forms.task_title, dueMinutes: d.forms.task_due, owner: d.forms.task_owner });
    if (checked.error) {
      d.errors.tasks = t(checked.error);
      this.renderDetail();
      return;
    }
    this.act(d, "task-add", "tasks", "POST", `/api/incidents/${encodeURIComponent(d.id)}/tasks`, checked.body, (body) => {
      d.forms.task_title = "";
      d.forms.task_owner = "";
      if (d.incident) d.incident = { ...d.incident, tasks: upsertById(d.incident.tasks, body) };
    });
  }

  finishTask(taskId) {
    const d = this.detail;
    const result = String(d.forms.task_result ?? "").trim();
    if (!result) {
      d.errors.tasks = t("tasks.need_result");
      this.renderDetail();
      this.focusDetail(`result:${taskId}`);
      return;
    }
    this.act(d, `task:${taskId}`, "tasks", "POST", `/api/tasks/${encodeURIComponent(taskId)}`, { status: "done", result }, (body) => {
      d.pendingDone = null;
      d.forms.task_result = "";
      if (d.incident) d.incident = { ...d.incident, tasks: upsertById(d.incident.tasks, body) };
    });
  }

  // ---- the panel's sections ----

  detailStatus(d, status) {
    const busy = d.busy.has("status");
    const actions = lifecycleActions(status);
    // The incident moved on (another desk, the feed): a reason form for a step it can no longer take goes.
    if (d.pendingStatus && !busy && !actions.some((a) => a.action === d.pendingStatus)) d.pendingStatus = null;
    const parts = [];
    if (!actions.length) {
      parts.push(el("p", { class: "detail-empty", text: t("actions.none") }));
    } else {
      const row = el("div", { class: "status-actions" });
      for (const { action, needsReason } of actions) {
        const danger = action === "false_alarm" || action === "cancelled";
        row.append(el("button", {
          type: "button",
          class: `btn btn-small status-action${danger ? " is-danger" : ""}${d.pendingStatus === action ? " is-active" : ""}`,
          dataset: { act: "status", action, focusKey: `status:${action}` },
          disabled: busy,
          "aria-expanded": needsReason ? String(d.pendingStatus === action) : undefined,
          text: t(`action.${action}`),
        }));
      }
      parts.push(row);
    }
    if (d.pendingStatus) {
      const actionName = t(`action.${d.pendingStatus}`);
      parts.push(el("form", { class: "inline-form reason-form", dataset: { form: "reason", action: d.pendingStatus } },
        el("label", { class: "inline-label", for: "status-reason", text: t("action.reason_for", { action: actionName }) }),
        el("input", {
          id: "status-reason", class: "reason-input", type: "text", maxlength: "500", autocomplete: "off",
          placeholder: t("action.reason_placeholder"), value: d.forms.reason ?? "",
          dataset: { field: "reason", focusKey: "reason" },
        }),
        el("div", { class: "inline-buttons" },
          el("button", { type: "submit", class: "btn btn-small btn-primary reason-submit", disabled: busy,
            text: busy ? t("action.busy") : t("action.submit") }),
          el("button", { type: "button", class: "btn btn-small btn-plain reason-cancel",
            dataset: { act: "form-cancel", form: "reason" }, text: t("action.back") }))));
    }
    parts.push(this.actionError("status", d));
    return this.detailSection("status", "actions.title", ...parts);
  }

  detailDispatches(d, dispatches, incidentStatus) {
    const parts = [];
    const act = this.canAct();
    const ended = isTerminal(incidentStatus);
    const ordered = dispatches.slice().sort((a, b) =>
      (isActiveDispatch(b) - isActiveDispatch(a)) || (Number(a.id) - Number(b.id)));
    const activeUnits = new Set(dispatches.filter(isActiveDispatch).map((x) => String(x.unit_id)));
    if (!ordered.length) parts.push(el("p", { class: "detail-empty", text: t("dispatches.none") }));
    const ul = el("ul", { class: "dispatch-list" });
    for (const x of ordered) {
      const id = String(x.id);
      const status = String(x.status ?? "");
      const overdue = Boolean(x.overdue_at) && status === "dispatched";
      const ackMs = timeOf(x.ack_deadline);
      const li = el("li", {
        class: `dispatch${overdue ? " is-overdue" : ""}${isActiveDispatch(x) ? "" : " is-ended"}`,
        dataset: { dispatchId: id, unitId: String(x.unit_id ?? ""), status },
      });
      li.append(el("div", { class: "dispatch-head" },
        el("span", { class: "dispatch-unit", text: this.unitCallsign(x.unit_id) }),
        el("span", { class: "dispatch-unit-id", text: String(x.unit_id ?? "") }),
        el("span", { class: `dispatch-status ds-${classToken(status, DISPATCH_STATUSES)}`, text: label("dispatch_status", status) })));
      li.append(el("div", { class: "dispatch-meta" },
        x.capability ? el("span", { text: label("capability", x.capability) }) : null,
        el("span", { class: "dispatch-eta", text: formatEta(x.eta_s) }),
        // Once flagged overdue, the note below says it; until then the deadline counts down.
        status === "dispatched" && ackMs && !x.overdue_at
          ? el("span", { class: "dispatch-countdown", dataset: { deadline: String(ackMs) } }) : null));
      for (const s of list(x.supplies)) {
        li.append(el("div", { class: "dispatch-supply", text: t("dispatches.supply", {
          quantity: s.quantity ?? "", unit: s.unit ?? "", item: s.item ?? "", depot: s.depot_id ?? "",
        }) }));
      }
      if (x.reason) li.append(el("div", { class: "dispatch-reason", text: t("dispatches.reason", { reason: String(x.reason) }) }));
      if (overdue) li.append(el("div", { class: "overdue-note", role: "alert", text: t("dispatches.overdue") }));
      const offer = x.overdue_at ? d.offers.get(id) : undefined;
      // The offer stands while the overdue unit has not taken the job and the offered one is not already going.
      if (x.overdue_at && (status === "dispatched" || DISPATCH_GONE.has(status)) && !ended) {
        if (offer && !activeUnits.has(String(offer.unit_id))) {
          const callsign = String(offer.callsign ?? offer.unit_id);
          li.append(el("div", { class: "dispatch-offer", dataset: { offerUnitId: String(offer.unit_id) } },
            el("span", { class: "offer-line", text: t("dispatches.offer_line", {
              callsign, type: label("unit_type", offer.type), eta: formatEta(offer.eta_s),
            }) }),
            act ? el("button", {
              type: "button", class: "btn btn-small btn-primary offer-send",
              dataset: { act: "offer", dispatchId: id, focusKey: `offer:${id}` },
              disabled: d.busy.has(`offer:${id}`), text: t("dispatches.send", { callsign }),
            }) : null));
        } else if (offer === null) {
          li.append(el("div", { class: "dispatch-offer is-empty", text: t("dispatches.no_offer") }));
        }
      }
      if (act && isActiveDispatch(x)) {
        li.append(el("div", { class: "dispatch-actions" },
          el("button", {
            type: "button", class: "btn btn-small dispatch-cancel",
            dataset: { act: "callback", dispatchId: id, focusKey: `callback:${id}` },
            disabled: d.busy.has(`callback:${id}`), text: t("dispatches.call_back"),
          })));
      }
      ul.append(li);
    }
    if (ordered.length) parts.push(ul);
    parts.push(this.actionError("dispatches", d));
    const section = this.detailSection("dispatches", "dispatches.title", ...parts);
    const active = dispatches.filter(isActiveDispatch).length;
    if (active) section.firstChild.append(el("span", { class: "heading-count", text: t("dispatches.active_count", { n: active }) }));
    return section;
  }

  unitChoiceText(u) {
    return t("rec.unit_line", {
      callsign: u.callsign ?? u.id ?? t("field.none"),
      type: label("unit_type", u.type),
      eta: formatEta(u.eta_s),
    });
  }

  /** A dispatch checkbox for one recommended unit or supply lot. */
  pickBox(d, choice, name) {
    const ticked = d.picks.has(choice.key) ? d.picks.get(choice.key) : choice.picked;
    return el("input", {
      type: "checkbox", class: "pick", checked: ticked, disabled: d.busy.has("dispatch"),
      "aria-label": t("dispatch.pick_label", { name }),
      dataset: { pick: choice.key, focusKey: `pick:${choice.key}` },
    });
  }

  detailRecommendation(d, recError, dispatches, incidentStatus) {
    const rec = d.rec;
    const parts = [];
    if (d.loading && !rec) parts.push(el("p", { class: "detail-loading", role: "status", text: t("detail.loading") }));
    if (recError) parts.push(el("p", { class: "detail-error", role: "alert", text: recError }));
    if (!rec) return this.detailSection("recommendation", "rec.title", ...parts);

    const act = this.canAct();
    const choices = dispatchChoices(rec, dispatches);
    const byKey = new Map([...choices.units, ...choices.supplies].map((c) => [c.key, c]));

    const plan = rec.plan && typeof rec.plan === "object" ? rec.plan : {};
    parts.push(el("p", { class: "rec-plan" },
      el("span", { class: "rec-plan-name", text: t("rec.plan", { name: plan.name ?? t("field.none") }) }),
      rec.complete ? el("span", { class: "rec-complete", text: t("rec.complete") }) : null));
    if (rec.note) parts.push(el("p", { class: "rec-note", text: String(rec.note) }));

    const shortfalls = Array.isArray(rec.shortfalls) ? rec.shortfalls : [];
    if (shortfalls.length) {
      const ul = el("ul", { class: "shortfall-list" });
      for (const s of shortfalls) {
        if (!s || typeof s !== "object") continue;
        const text = s.message
          ? String(s.message)
          : t("rec.shortfall", { what: s.key ?? s.what ?? "", needed: s.needed ?? "", available: s.available ?? "" });
        ul.append(el("li", { class: "shortfall", dataset: { what: String(s.what ?? ""), key: String(s.key ?? "") }, text }));
      }
      parts.push(el("div", { class: "shortfalls", role: "alert" },
        el("h5", { class: "shortfalls-title", text: t("rec.shortfalls") }), ul));
    }

    const assignments = Array.isArray(rec.assignments) ? rec.assignments : [];
    if (assignments.length) {
      const ul = el("ul", { class: "assignments" });
      for (const a of assignments) {
        if (!a || typeof a !== "object") continue;
        const chosen = Array.isArray(a.chosen) ? a.chosen : [];
        const alternates = Array.isArray(a.alternates) ? a.alternates : [];
        const short = chosen.length < (Number(a.needed) || 0);
        const units = el("ul", { class: "assignment-units" });
        for (const u of chosen) {
          if (!u || typeof u !== "object") continue;
          const choice = byKey.get(`unit:${u.id}`);
          const line = el("span", { class: "unit-line" }, this.unitChoiceText(u),
            u.late ? el("span", { class: "late-badge", text: t("rec.late") }) : null,
            choice && choice.covered ? el("span", { class: "covered-badge", text: t("dispatch.covered") }) : null);
          units.append(el("li", { class: `unit-choice${u.late ? " is-late" : ""}${etaMinutes(u.eta_s) === null ? " is-unreachable" : ""}`, dataset: { unitId: String(u.id ?? "") } },
            act && choice ? el("label", { class: "pick-label" }, this.pickBox(d, choice, String(u.callsign ?? u.id)), line) : line));
        }
        ul.append(el("li", { class: `assignment${short ? " is-short" : ""}`, dataset: { capability: String(a.capability ?? "") } },
          el("div", { class: "assignment-head" },
            el("span", { class: "assignment-capability", text: label("capability", a.capability) }),
            el("span", { class: "assignment-count", text: t("rec.needed", { n: a.needed ?? 0, chosen: chosen.length }) })),
          units.childElementCount ? units : el("p", { class: "detail-empty", text: t("rec.none_chosen") }),
          alternates.length
            ? el("small", { class: "assignment-alternates", text: t("rec.alternates", {
              list: alternates.filter((u) => u && typeof u === "object").map((u) => `${u.callsign ?? u.id ?? ""} (${formatEta(u.eta_s)})`).join(", "),
            }) })
            : null));
      }
      parts.push(el("h5", { class: "rec-subheading", text: t("rec.units") }), ul);
    }

    const supplies = Array.isArray(rec.supplies) ? rec.supplies : [];
    parts.push(el("h5", { class: "rec-subheading", text: t("rec.supplies") }));
    if (!supplies.length) {
      parts.push(el("p", { class: "detail-empty", text: t("rec.no_supplies") }));
    } else {
      const ul = el("ul", { class: "rec-supplies" });
      for (const s of supplies) {
        if (!s || typeof s !== "object") continue;
        const sources = el("ul", { class: "supply-sources" });
        for (const src of Array.isArray(s.sources) ? s.sources : []) {
          if (!src || typeof src !== "object") continue;
          const choice = byKey.get(`supply:${src.depot_id}:${s.item}`);
          const line = el("span", { class: "source-line" },
            t("rec.source_line", { name: src.name ?? src.depot_id ?? "", quantity: src.quantity ?? "", eta: formatEta(src.eta_s) }),
            choice && !choice.covered && choice.quantity !== Number(src.quantity)
              ? el("span", { class: "send-qty", text: t("dispatch.send_qty", { n: choice.quantity, unit: s.unit ?? "" }) }) : null,
            choice && choice.covered ? el("span", { class: "covered-badge", text: t("dispatch.covered") }) : null);
          sources.append(el("li", { class: "supply-source", dataset: { depotId: String(src.depot_id ?? ""), item: String(s.item ?? "") } },
            act && choice ? el("label", { class: "pick-label" }, this.pickBox(d, choice, `${s.item} · ${src.name ?? src.depot_id}`), line) : line));
        }
        const short = (Number(s.filled) || 0) < (Number(s.needed) || 0);
        ul.append(el("li", { class: `rec-supply${short ? " is-short" : ""}` },
          el("span", { text: t("rec.supply_line", { item: s.item ?? "", filled: s.filled ?? 0, needed: s.needed ?? 0, unit: s.unit ?? "" }) }),
          sources.childElementCount ? sources : null));
      }
      parts.push(ul);
    }
    if (act) parts.push(this.dispatchControls(d, choices, incidentStatus));
    return this.detailSection("recommendation", "rec.title", ...parts);
  }

  /** The "Dispatch recommended" button, what it would send, and how the last send went. */
  dispatchControls(d, choices, incidentStatus) {
    const payload = dispatchBody(choices, d.picks);
    const busy = d.busy.has("dispatch");
    const ended = isTerminal(incidentStatus);
    let hint = null;
    if (ended) hint = t("dispatch.ended");
    else if (!choices.units.length) hint = t("dispatch.no_units");
    else if (!payload.units.length) hint = t("dispatch.pick_unit");
    const box = el("div", { class: "dispatch-controls" },
      el("div", { class: "dispatch-bar" },
        el("button", {
          type: "button", id: "dispatch-recommended", class: "btn btn-primary dispatch-send",
          dataset: { act: "dispatch", focusKey: "dispatch" },
          disabled: busy || ended || !payload.units.length,
          "aria-busy": busy ? "true" : undefined,
          text: busy ? t("dispatch.sending") : t("dispatch.send"),
        }),
        el("span", { class: "dispatch-summary", text: t("dispatch.summary", { units: payload.units.length, supplies: payload.supplies.length }) })),
      hint ? el("p", { class: "dispatch-hint", text: hint }) : null);
    if (d.dispatchResult && d.dispatchResult.length) {
      const ul = el("ul", { class: "dispatch-result-list" });
      for (const r of d.dispatchResult) {
        ul.append(el("li", { dataset: { unitId: String(r.unit_id ?? "") }, text: t("dispatch.result_line", {
          callsign: this.unitCallsign(r.unit_id), eta: formatEta(r.eta_s),
        }) }));
      }
      box.append(el("div", { class: "dispatch-result", role: "status" },
        el("span", { class: "dispatch-result-title", text: t("dispatch.done") }), ul));
    }
    const error = this.actionError("dispatch", d);
    if (error) box.append(error);
    return box;
  }

  detailTasks(d, tasks) {
    const act = this.canAct();
    const parts = [];
    if (!tasks.length) parts.push(el("p", { class: "detail-empty", text: t("tasks.none") }));
    const ul = el("ul", { class: "task-list" });
    const ordered = tasks.slice().sort((a, b) =>
      (isOpenTask(b) - isOpenTask(a)) || (timeOf(a.due_at) - timeOf(b.due_at)) || (Number(a.id) - Number(b.id)));
    for (const task of ordered) {
      const id = String(task.id);
      const status = String(task.status ?? "");
      const open = isOpenTask(task);
      const overdue = open && Boolean(task.overdue_at);
      const dueMs = timeOf(task.due_at);
      const owner = task.owner_unit ? this.unitCallsign(task.owner_unit) : task.owner_name;
      const notes = list(task.notes);
      const last = notes.length ? notes[notes.length - 1] : null;
      const li = el("li", { class: `task${overdue ? " is-overdue" : ""}${open ? "" : " is-closed"}`, dataset: { taskId: id, status } },
        el("div", { class: "task-head" },
          el("span", { class: "task-title", text: String(task.title ?? "") }),
          el("span", { class: `task-status ts-${classToken(status, TASK_STATUSES)}`, text: label("task_status", status) })),
        el("div", { class: "task-meta" },
          owner ? el("span", { class: "task-owner", text: t("tasks.owner", { owner: String(owner) }) }) : null,
          el("span", { class: "task-due-at", text: t("tasks.due", { time: fmtTime(task.due_at) }) }),
          open && dueMs ? el("span", { class: "task-due", dataset: { due: String(dueMs) } }) : null),
        overdue ? el("div", { class: "overdue-note", text: t("tasks.overdue") }) : null,
        task.result ? el("div", { class: "task-result", text: t("tasks.result", { result: String(task.result) }) }) : null,
        last ? el("div", { class: "task-note", text: t("tasks.last_note", { author: last.author ?? "", note: last.note ?? "" }) }) : null);
      if (act && open) {
        if (d.pendingDone === id) {
          const busy = d.busy.has(`task:${id}`);
          li.append(el("form", { class: "inline-form result-form", dataset: { form: "task-result", taskId: id } },
            el("label", { class: "inline-label", for: `task-result-${id}`, text: t("tasks.result_label") }),
            el("input", {
              id: `task-result-${id}`, class: "result-input", type: "text", maxlength: "2000", autocomplete: "off",
              placeholder: t("tasks.result_placeholder"), value: d.forms.task_result ?? "",
              dataset: { field: "task_result", focusKey: `result:${id}` },
            }),
            el("div", { class: "inline-buttons" },
              el("button", { type: "submit", class: "btn btn-small btn-primary result-submit", disabled: busy,
                text: busy ? t("action.busy") : t("tasks.done") }),
              el("button", { type: "button", class: "btn btn-small btn-plain result-cancel",
                dataset: { act: "form-cancel", form: "task-result" }, text: t("action.back") }))));
        } else {
          li.append(el("div", { class: "task-actions" },
            el("button", { type: "button", class: "btn btn-small task-done",
              dataset: { act: "task-done", taskId: id, focusKey: `task-done:${id}` }, text: t("tasks.done") })));
        }
      }
      ul.append(li);
    }
    if (ordered.length) parts.push(ul);
    if (act) parts.push(this.taskForm(d));
    parts.push(this.actionError("tasks", d));
    return this.detailSection("tasks", "tasks.title", ...parts);
  }

  taskForm(d) {
    const busy = d.busy.has("task-add");
    const units = el("datalist", { id: "task-owner-units" });
    const known = [...this.state.units.values()].sort((a, b) => String(a.id).localeCompare(String(b.id)));
    for (const u of known.slice(0, 500)) units.append(el("option", { value: String(u.id), label: String(u.callsign ?? u.id) }));
    const field = (name, labelKey, input) => el("label", { class: `task-field task-field-${name}` },
      el("span", { class: "inline-label", text: t(labelKey) }), input);
    return el("form", { class: "task-form", dataset: { form: "task-add" } },
      el("h5", { class: "rec-subheading", text: t("tasks.add_title") }),
      el("div", { class: "task-form-fields" },
        field("title", "tasks.field_title", el("input", {
          name: "title", type: "text", maxlength: "200", autocomplete: "off", value: d.forms.task_title ?? "",
          dataset: { field: "task_title", focusKey: "task-title" },
        })),
        field("due", "tasks.field_due", el("input", {
          name: "due", type: "number", min: "1", max: String(MAX_DUE_MINUTES), step: "1", inputmode: "numeric",
          value: d.forms.task_due ?? "", dataset: { field: "task_due", focusKey: "task-due" },
        })),
        field("owner", "tasks.field_owner", el("input", {
          name: "owner", type: "text", maxlength: "64", autocomplete: "off", list: "task-owner-units",
          value: d.forms.task_owner ?? "", dataset: { field: "task_owner", focusKey: "task-owner" },
        }))),
      units,
      el("button", { type: "submit", class: "btn btn-small btn-primary task-add", disabled: busy,
        text: busy ? t("action.busy") : t("tasks.add") }));
  }

  /** One line of the timeline's detail: the unit, the task, the reason, the offer. */
  timelineDetail(entry, tasksById) {
    const detail = entry.detail && typeof entry.detail === "object" ? entry.detail : {};
    const bits = [];
    if (detail.unit_id) bits.push(t("timeline.unit", { unit: this.unitCallsign(detail.unit_id) }));
    if (detail.title) bits.push(String(detail.title));
    else if (detail.task_id !== undefined && tasksById.has(String(detail.task_id))) bits.push(String(tasksById.get(String(detail.task_id)).title ?? ""));
    if (detail.offer && typeof detail.offer === "object" && detail.offer.unit_id) {
      bits.push(t("timeline.offer", { callsign: String(detail.offer.callsign ?? detail.offer.unit_id) }));
    }
    if (detail.reason) bits.push(t("dispatches.reason", { reason: String(detail.reason) }));
    if (detail.result) bits.push(t("tasks.result", { result: String(detail.result) }));
    return bits.join(" · ");
  }

  detailTimeline(timeline, tasks) {
    if (!timeline.length) return this.detailSection("timeline", "timeline.title", el("p", { class: "detail-empty", text: t("timeline.none") }));
    const tasksById = new Map(tasks.map((x) => [String(x.id), x]));
    const ol = el("ol", { class: "timeline" });
    // Newest first: what just happened is what a commander looks for.
    const shown = timeline.slice(-TIMELINE_ENTRIES).reverse();
    for (const entry of shown) {
      const group = timelineGroup(entry.action);
      const from = entry.from ? (group ? label(group, entry.from) : String(entry.from)) : null;
      const to = entry.to ? (group ? label(group, entry.to) : String(entry.to)) : null;
      const change = from && to ? t("timeline.change", { from, to }) : (to || from);
      const detail = this.timelineDetail(entry, tasksById);
      ol.append(el("li", { class: "timeline-entry", dataset: { action: String(entry.action ?? "") } },
        el("span", { class: "tl-time", text: fmtTime(entry.time) }),
        el("span", { class: "tl-actor", text: String(entry.actor ?? "") }),
        el("span", { class: "tl-action", text: label("timeline_action", entry.action) }),
        change ? el("span", { class: "tl-change", text: change }) : null,
        detail ? el("span", { class: "tl-detail", text: detail }) : null));
    }
    const more = timeline.length > shown.length
      ? el("p", { class: "detail-more", text: t("timeline.more", { n: timeline.length - shown.length }) })
      : null;
    return this.detailSection("timeline", "timeline.title", ol, more);
  }

  detailAlarms(alarms) {
    const list = Array.isArray(alarms) ? alarms : [];
    if (!list.length) return this.detailSection("alarms", "detail.alarms", el("p", { class: "detail-empty", text: t("detail.no_alarms") }));
    const ul = el("ul", { class: "detail-alarms-list" });
    for (const a of list.slice(0, DETAIL_ALARMS)) {
      if (!a || typeof a !== "object") continue;
      const value = a.value !== null && a.value !== undefined ? `${a.value}${a.unit ? ` ${a.unit}` : ""}` : null;
      ul.append(el("li", { class: `detail-alarm sev-${classToken(a.severity, SEVERITIES)}` },
        el("span", { class: "alarm-meta", text: t("detail.alarm_line", {
          time: fmtTime(a.time), sensor: a.sensor_id ?? t("field.none"), severity: label("severity", a.severity),
        }) }),
        a.message ? el("span", { class: "alarm-message", text: String(a.message) }) : null,
        value ? el("span", { class: "alarm-value", text: value }) : null));
    }
    const more = list.length > DETAIL_ALARMS
      ? el("p", { class: "detail-more", text: t("detail.more_alarms", { n: list.length - DETAIL_ALARMS }) })
      : null;
    return this.detailSection("alarms", "detail.alarms", ul, more);
  }

  detailPlaces(name, headingKey, places, kindGroup) {
    const list = (Array.isArray(places) ? places : []).filter((p) => p && typeof p === "object");
    if (!list.length) return this.detailSection(name, headingKey, el("p", { class: "detail-empty", text: t("detail.no_places") }));
    const ul = el("ul", { class: "detail-places" });
    for (const p of list) {
      ul.append(el("li", { class: "detail-place", dataset: { placeId: String(p.id ?? "") } },
        el("span", { class: "place-name", text: String(p.name ?? p.id ?? "") }),
        el("span", { class: "place-meta", text: t("detail.place_line", { kind: label(kindGroup, p.kind), distance: formatDistance(p.distance_m) }) })));
    }
    return this.detailSection(name, headingKey, ul);
  }
}

// ---------------------------------------------------------------------------

// The field app (field.html) imports this module for its parts; only the console page boots a console.
startPage({ viewId: "console-view", handle: "emergencyConsole", name: "console", create: () => new Console() });

export { LANGS };
// The browser-edge helpers the field app (static/field.js) shares with the console.
export { el, fmtTime, fmtCoords, hasPosition };
