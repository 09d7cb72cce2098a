// Pure parts of the queue's priority, the boards and the dashboard (issue #7): `npm test` in frontend/.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  ConsoleState, queueOf, slaState, comparePriority, matchesFilters, AWAITING_DISPATCH,
  stockLevel, depotStock, utcDate, niceScale, scaleLength, responseRows, countRows, statsPath,
  fitLabel, tabFromHash, TABS,
} from "../static/console.js";
import { DICTS, has, missingKeys } from "../static/i18n.js";

const T0 = Date.parse("2024-05-01T10:00:00Z");
const at = (s) => new Date(T0 + s * 1000).toISOString();
const inc = (id, severity, openedS, extra = {}) => ({
  id: String(id), kind: "fire", severity, status: "new", district: "D-1", title: `T${id}`,
  opened_at: at(openedS), updated_at: at(openedS), ...extra,
});

test("the SLA clock: waiting incidents are due until the target, then breached; worked ones are not judged", () => {
  const a = inc(1, "Moderate", 0);
  assert.deepEqual(slaState(a, T0 + 59_000, 60), { state: "due", leftMs: 1000 });
  // Exactly at the target is still within it (docs/kpis.md: "at most the target").
  assert.deepEqual(slaState(a, T0 + 60_000, 60), { state: "due", leftMs: 0 });
  assert.deepEqual(slaState(a, T0 + 61_000, 60), { state: "breached", leftMs: -1000 });
  assert.equal(slaState({ ...a, status: "confirmed" }, T0 + 61_000, 60).state, "breached");
  assert.equal(slaState({ ...a, status: "responding" }, T0 + 61_000, 60).state, "none");
  assert.equal(slaState({ ...a, status: "contained" }, T0 + 61_000, 60).state, "none");
  // No target or no clock: nothing to judge by.
  assert.equal(slaState(a, T0 + 61_000, null).state, "none");
  assert.equal(slaState(a, NaN, 60).state, "none");
  assert.equal(slaState({ ...a, opened_at: "garbage" }, T0, 60).state, "none");
  assert.deepEqual(AWAITING_DISPATCH, ["new", "confirmed"]);
});

test("priority: a breached incident rises one severity band and leads it", () => {
  const now = T0 + 100_000; // 100 s after T0, target 60 s
  const list = [
    inc("sev-worked", "Severe", 90, { status: "responding", updated_at: at(95) }),
    inc("sev-new", "Severe", 80), // waiting 20 s: due
    inc("mod-late", "Moderate", 0), // waiting 100 s: breached, rises to the Severe band
    inc("mod-new", "Moderate", 70), // waiting 30 s: due
    inc("ext-worked", "Extreme", 0, { status: "responding" }),
    inc("min-late", "Minor", 10), // breached: rises to the Moderate band, above the due Moderate
    inc("unk-late", "Unknown", 20), // breached: rises to the Minor band
  ];
  const order = queueOf(list, {}, { now, dispatchS: 60 }).map((i) => i.id);
  assert.deepEqual(order, ["ext-worked", "mod-late", "sev-new", "sev-worked", "min-late", "mod-new", "unk-late"]);
});

test("priority: a breached Extreme goes above everything, and ties go to the longest wait", () => {
  const now = T0 + 200_000;
  const list = [
    inc("ext-worked", "Extreme", 0, { status: "responding" }),
    inc("ext-late-young", "Extreme", 120),
    inc("ext-late-old", "Extreme", 10),
    inc("sev-late", "Severe", 0),
  ];
  // Breached Extremes rise above the Extreme band, the oldest first; the breached Severe joins
  // the Extreme band and leads it, ahead of the Extreme already being worked.
  assert.deepEqual(queueOf(list, {}, { now, dispatchS: 60 }).map((i) => i.id),
    ["ext-late-old", "ext-late-young", "sev-late", "ext-worked"]);
  assert.ok(comparePriority(list[2], list[1], now, 60) < 0);
  assert.equal(comparePriority(list[0], list[0], now, 60), 0);
});

test("priority: the order changes as time passes, without any event", () => {
  const list = [inc("sev", "Severe", 50), inc("mod", "Moderate", 0)];
  const before = queueOf(list, {}, { now: T0 + 55_000, dispatchS: 60 }).map((i) => i.id);
  const after = queueOf(list, {}, { now: T0 + 61_000, dispatchS: 60 }).map((i) => i.id);
  assert.deepEqual(before, ["sev", "mod"]);
  assert.deepEqual(after, ["mod", "sev"]); // the Moderate one passed its target and rose
});

test("priority without the SLA settings is the plain severity/updated order", () => {
  const list = [inc(1, "Minor", 0, { updated_at: at(50) }), inc(2, "Minor", 10, { updated_at: at(20) }), inc(3, "Severe", 5)];
  assert.deepEqual(queueOf(list).map((i) => i.id), ["3", "1", "2"]);
  assert.deepEqual(queueOf(list, {}, { now: T0, dispatchS: null }).map((i) => i.id), ["3", "1", "2"]);
  // With the clock, waiting ones go longest-waiting first instead.
  assert.deepEqual(queueOf(list, {}, { now: T0 + 30_000, dispatchS: 60 }).map((i) => i.id), ["3", "1", "2"]);
  assert.deepEqual(queueOf(list, {}, { now: T0 + 30_000, dispatchS: 600 }).map((i) => i.id), ["3", "1", "2"]);
});

test("the district filter", () => {
  const a = inc(1, "Minor", 0, { district: "D-1" });
  const b = inc(2, "Minor", 0, { district: null });
  assert.ok(matchesFilters(a, { district: "D-1" }));
  assert.ok(!matchesFilters(b, { district: "D-1" }));
  assert.ok(matchesFilters(b, { district: "" }));
  assert.deepEqual(queueOf([a, b], { district: "D-1", kind: "fire" }).map((i) => i.id), ["1"]);
});

test("a unit's current dispatch follows dispatch events after the snapshot", () => {
  const s = new ConsoleState();
  s.apply({
    type: "snapshot", seq: 1, incidents: [],
    units: [
      { id: "U1", status: "dispatched", dispatch: { id: 7, incident_id: 3, status: "dispatched" } },
      { id: "U2", status: "available", dispatch: null },
    ],
  });
  let c = s.apply({ type: "event", seq: 2, name: "dispatch.updated", data: { id: 7, incident_id: 3, unit_id: "U1", status: "en_route" } });
  assert.ok(c.units.has("U1"));
  assert.deepEqual(s.units.get("U1").dispatch, { id: 7, incident_id: 3, status: "en_route" });
  // A position keeps it (events carry only what they are about).
  s.apply({ type: "event", seq: 3, name: "unit.moved", data: { id: "U1", lat: 30, lon: 120 } });
  assert.equal(s.units.get("U1").dispatch.status, "en_route");
  s.apply({ type: "event", seq: 4, name: "dispatch.created", data: { id: 9, incident_id: 5, unit_id: "U2", status: "dispatched" } });
  assert.deepEqual(s.units.get("U2").dispatch, { id: 9, incident_id: 5, status: "dispatched" });
  // An older dispatch ending never clears the newer one; its own end does.
  s.apply({ type: "event", seq: 5, name: "dispatch.updated", data: { id: 4, incident_id: 1, unit_id: "U2", status: "cleared" } });
  assert.equal(s.units.get("U2").dispatch.id, 9);
  c = s.apply({ type: "event", seq: 6, name: "dispatch.updated", data: { id: 9, incident_id: 5, unit_id: "U2", status: "declined" } });
  assert.equal(s.units.get("U2").dispatch, null);
  assert.ok(c.units.has("U2"));
  assert.equal(c.activity.length, 1, "the incident detail still hears about it");
  // A unit this console does not see is not invented.
  s.apply({ type: "event", seq: 7, name: "dispatch.created", data: { id: 10, incident_id: 5, unit_id: "U9", status: "dispatched" } });
  assert.ok(!s.units.has("U9"));
});

test("low stock: below the line is low, none is out, expired (today or before) is as good as none", () => {
  const today = "2024-05-01";
  assert.equal(stockLevel({ quantity: 499 }, 500, today), "low");
  assert.equal(stockLevel({ quantity: 500 }, 500, today), "ok");
  assert.equal(stockLevel({ quantity: 0 }, 500, today), "out");
  assert.equal(stockLevel({ quantity: 0 }, undefined, today), "out", "no line: flagged only when none is left");
  assert.equal(stockLevel({ quantity: 3 }, undefined, today), "ok");
  assert.equal(stockLevel({ quantity: 3 }, null, today), "ok");
  // The planner sends stock that expires after today (dispatch/postgis.py): today's is expired.
  assert.equal(stockLevel({ quantity: 900, expires_on: "2024-05-01" }, 500, today), "expired");
  assert.equal(stockLevel({ quantity: 900, expires_on: "2024-05-02" }, 500, today), "ok");
  assert.equal(stockLevel({ quantity: "12.5" }, 10, today), "ok", "numeric strings count");
  assert.equal(stockLevel({ quantity: "x" }, 10, today), "out");
  assert.equal(utcDate(Date.parse("2024-05-01T23:59:59Z")), "2024-05-01");
});

test("a depot's stock: worst first, then by item, with the number of warnings", () => {
  const depot = { id: "DEP-1", stock: [
    { item: "tents", quantity: 500, unit: "pcs" },
    { item: "blankets", quantity: 100, unit: "pcs" },
    { item: "sandbags", quantity: 0, unit: "bags" },
    { item: "pumps", quantity: 9, unit: "pcs", expires_on: "2020-01-01" },
  ] };
  const { items, warnings } = depotStock(depot, { blankets: 500, tents: 100, sandbags: 3000 }, "2024-05-01");
  assert.deepEqual(items.map((s) => [s.item, s.level, s.minimum]), [
    ["pumps", "expired", null], ["sandbags", "out", 3000], ["blankets", "low", 500], ["tents", "ok", 100],
  ]);
  assert.equal(warnings, 3);
  assert.deepEqual(depotStock({ id: "X" }, null, "2024-05-01"), { items: [], warnings: 0 });
});

test("chart scaling: nice maxima in 1-2-2.5-5 steps, whole steps for counts", () => {
  assert.deepEqual(niceScale(47), { max: 50, step: 10, ticks: [0, 10, 20, 30, 40, 50] });
  assert.deepEqual(niceScale(240), { max: 250, step: 50, ticks: [0, 50, 100, 150, 200, 250] });
  assert.deepEqual(niceScale(61), { max: 80, step: 20, ticks: [0, 20, 40, 60, 80] });
  assert.deepEqual(niceScale(110), { max: 125, step: 25, ticks: [0, 25, 50, 75, 100, 125] });
  assert.deepEqual(niceScale(60), { max: 60, step: 20, ticks: [0, 20, 40, 60] });
  assert.deepEqual(niceScale(0.3), { max: 0.3, step: 0.1, ticks: [0, 0.1, 0.2, 0.3] });
  // The response chart's axis is a share of each target: 100 % is always a tick.
  assert.deepEqual(niceScale(1.2), { max: 1.25, step: 0.25, ticks: [0, 0.25, 0.5, 0.75, 1, 1.25] });
  assert.ok(niceScale(3.7, { ticks: 8 }).ticks.includes(1));
  assert.deepEqual(niceScale(3, { integer: true }), { max: 3, step: 1, ticks: [0, 1, 2, 3] });
  assert.deepEqual(niceScale(1, { integer: true }), { max: 1, step: 1, ticks: [0, 1] });
  assert.deepEqual(niceScale(12, { integer: true }), { max: 15, step: 5, ticks: [0, 5, 10, 15] });
  assert.deepEqual(niceScale(0), { max: 1, step: 1, ticks: [0, 1] }, "an empty chart still has an axis");
  assert.deepEqual(niceScale(-5), { max: 1, step: 1, ticks: [0, 1] });
  assert.deepEqual(niceScale(NaN), { max: 1, step: 1, ticks: [0, 1] });
  for (const v of [1, 7, 13, 99, 101, 999, 1234.5, 86400]) {
    const s = niceScale(v);
    assert.ok(s.max >= v && s.ticks.length <= 6 + 1, `${v}: ${JSON.stringify(s)}`);
    assert.equal(s.ticks[s.ticks.length - 1], s.max);
  }
  assert.equal(scaleLength(30, 60, 300), 150);
  assert.equal(scaleLength(90, 60, 300), 300, "clipped to the axis");
  assert.equal(scaleLength(-3, 60, 300), 0, "negative intervals (a fast sensor clock) draw no bar");
  assert.equal(scaleLength(null, 60, 300), 0);
  assert.equal(scaleLength(5, 0, 300), 0);
});

test("response rows and count rows from GET /api/stats", () => {
  const stats = {
    targets: { dispatch_s: 60, turnout_s: 80, travel_s: 240, goal: 0.9 },
    overall: { metrics: {
      incident_to_dispatch: { count: 4, p50: 37.5, p90: 76.5 },
      turnout: { count: 0, p50: null, p90: null },
      travel: { count: 2, p50: 200, p90: 260 },
    } },
    sla: {
      dispatch: { metric: "incident_to_dispatch", target_s: 60, goal: 0.9, measured: 4, within: 3, fraction: 0.75, met: false, breaches: [2] },
      turnout: { metric: "turnout", target_s: 80, goal: 0.9, measured: 0, within: 0, fraction: null, met: null, breaches: [] },
      travel: { metric: "travel", target_s: 240, goal: 0.9, measured: 2, within: 2, fraction: 1, met: true, breaches: [] },
    },
  };
  const rows = responseRows(stats);
  assert.deepEqual(rows.map((r) => [r.key, r.metric, r.target, r.p50, r.p90, r.fraction, r.met]), [
    ["dispatch", "incident_to_dispatch", 60, 37.5, 76.5, 0.75, false],
    ["turnout", "turnout", 80, null, null, null, null],
    ["travel", "travel", 240, 200, 260, 1, true],
  ]);
  assert.deepEqual(rows[0].breaches, [2]);
  assert.deepEqual(responseRows(null), []);

  const groups = [{ key: "flood", count: 2 }, { key: null, count: 5 }, { key: "fire", count: 5 }, { key: "gas_leak", count: 1 }];
  assert.deepEqual(countRows(groups), [
    { key: "fire", count: 5 }, { key: null, count: 5 }, { key: "flood", count: 2 }, { key: "gas_leak", count: 1 },
  ]);
  assert.deepEqual(countRows(groups, 3), [
    { key: "fire", count: 5 }, { key: null, count: 5 }, { key: null, others: 2, count: 3 },
  ]);
  const path = statsPath(7, T0, "district");
  assert.equal(path, `/api/stats?group=district&from=${encodeURIComponent("2024-04-24T10:00:00.000Z")}`);
});

test("labels fit the chart: CJK counts double, cut with an ellipsis", () => {
  assert.equal(fitLabel("Fire", 10), "Fire");
  assert.equal(fitLabel("Structure collapse", 10), "Structure…");
  assert.equal(fitLabel("建筑物倒塌事故", 8), "建筑物倒…");
  assert.equal(fitLabel(null, 5), "");
});

test("views: the address names one; the rejected messages are one of them", () => {
  assert.equal(tabFromHash("#dashboard"), "dashboard");
  assert.equal(tabFromHash("units"), "units");
  assert.equal(tabFromHash("#nope"), "map");
  assert.equal(tabFromHash(""), "map");
  assert.ok(TABS.includes("dead-letters"));
});

test("every new string exists in both languages, and the vocabularies the boards show are translated", () => {
  assert.deepEqual(missingKeys(), { zh: [], en: [] });
  for (const prefix of ["nav.", "units.", "depots.", "dash.", "dead.", "board.", "metric.", "supply_item.", "supply_unit."]) {
    const keys = Object.keys(DICTS.en).filter((k) => k.startsWith(prefix));
    assert.ok(keys.length > 0, prefix);
    for (const k of keys) {
      // A string the same in both languages is only right where it has no words (placeholders, digits).
      const words = DICTS.en[k].replace(/\{\w+\}/g, "").match(/[A-Za-z]{2,}/);
      if (words && !["supply_unit.L"].includes(k)) assert.notEqual(DICTS["zh-CN"][k], DICTS.en[k], k);
    }
  }
  // Every unit type, supply item and metric the server defines (dispatch/units.py, dispatch/kpi.py).
  for (const type of ["fire_engine", "ambulance", "rescue_squad", "hazmat_team", "police", "public_health_team", "utility_crew", "volunteer_team"]) {
    assert.ok(has(`unit_type.${type}`), type);
  }
  for (const item of ["tents", "drinking_water", "sandbags", "pumps", "generators", "medical_kits", "protective_suits", "blankets", "life_jackets", "food_rations", "disinfectant", "n95_masks"]) {
    assert.ok(has(`supply_item.${item}`), item);
  }
  for (const m of ["alarm_to_incident", "incident_to_dispatch", "dispatch_to_ack", "turnout", "travel", "on_scene", "total"]) {
    assert.ok(has(`metric.${m}`), m);
  }
});
