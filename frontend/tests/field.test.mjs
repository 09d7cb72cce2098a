// Pure-core tests for the field team's app (no browser): `npm test` in frontend/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  FIELD_STEPS, STEP_ORDER, stepActions, stepRequest, pickDispatch, shouldAnnounce, distanceMeters,
  arrivalAt, destinationOf, routeLines, supplyList, positionBody, PositionReporter, taskRequest,
  splitTemplate, clockTime, MAX_REASON, MAX_NOTE,
} from "../static/field.js";
import { DICTS, has, setLang, t } from "../static/i18n.js";

const dispatch = (id, status, extra = {}) => ({
  id, incident_id: 5, unit_id: "U-1", status, created_at: "2024-05-01T10:00:00+00:00",
  ack_deadline: "2024-05-01T10:01:30+00:00", eta_s: 312, supplies: [], order: null, ...extra,
});

test("step buttons follow dispatch/progress.py: forward only, decline before accepting", () => {
  const steps = (status) => stepActions(status).map((a) => a.step);
  assert.deepEqual(steps("dispatched"), ["acknowledged", "en_route", "on_scene", "declined"]);
  assert.deepEqual(steps("acknowledged"), ["en_route", "on_scene", "cleared"]);
  assert.deepEqual(steps("en_route"), ["on_scene", "cleared"]);
  assert.deepEqual(steps("on_scene"), ["cleared"]);
  for (const final of ["cleared", "declined", "cancelled", "nonsense", undefined, "__proto__"]) {
    assert.deepEqual(stepActions(final), [], String(final));
  }
});

test("the natural next step is the one primary button; decline asks why, cleared asks to confirm", () => {
  const dispatched = stepActions("dispatched");
  assert.deepEqual(dispatched.filter((a) => a.primary).map((a) => a.step), ["acknowledged"]);
  assert.deepEqual(dispatched.find((a) => a.step === "declined"), {
    step: "declined", primary: false, needsReason: true, confirm: false,
  });
  const onScene = stepActions("on_scene");
  assert.deepEqual(onScene, [{ step: "cleared", primary: true, needsReason: false, confirm: true }]);
  // Every step the server accepts from a field team has a button.
  const reported = new Set(Object.values(FIELD_STEPS).flat());
  assert.deepEqual([...reported].sort(), [...STEP_ORDER].sort());
});

test("the server's field steps are the ones the page offers", () => {
  // dispatch/progress.py is the authority; keep the copy honest.
  const source = readFileSync(new URL("../../dispatch/progress.py", import.meta.url), "utf8");
  const block = source.slice(source.indexOf("_FIELD_STEPS"), source.indexOf("FIELD_REPORTS"));
  const server = {};
  for (const m of block.matchAll(/"(\w+)": frozenset\(\{([^}]*)\}\)/g)) {
    server[m[1]] = [...m[2].matchAll(/"(\w+)"/g)].map((x) => x[1]).sort();
  }
  const ours = Object.fromEntries(Object.entries(FIELD_STEPS).map(([k, v]) => [k, [...v].sort()]));
  assert.deepEqual(ours, server);
});

test("a step request needs a reason only to decline, and keeps it within the server's limit", () => {
  assert.deepEqual(stepRequest("acknowledged"), { body: { status: "acknowledged" } });
  assert.deepEqual(stepRequest("declined", "  "), { error: "action.reason_needed" });
  assert.deepEqual(stepRequest("declined", " Engine broke down "), {
    body: { status: "declined", reason: "Engine broke down" },
  });
  assert.deepEqual(stepRequest("declined", "x".repeat(MAX_REASON + 1)), { error: "fieldapp.reason_long" });
  assert.deepEqual(stepRequest("cancelled"), { error: "fieldapp.step_unknown" });
});

test("the current dispatch is the active one, the last the newest finished one", () => {
  const list = [dispatch(3, "declined"), dispatch(9, "en_route"), dispatch(7, "cleared"), null, "x"];
  const picked = pickDispatch(list);
  assert.equal(picked.current.id, 9);
  assert.equal(picked.last.id, 7);
  assert.deepEqual(pickDispatch([]), { current: null, last: null });
  assert.deepEqual(pickDispatch(undefined), { current: null, last: null });
  assert.equal(pickDispatch([dispatch(2, "cleared")]).current, null);
});

test("an order is announced once, while it waits for acknowledgement", () => {
  const seen = new Set();
  assert.equal(shouldAnnounce(dispatch(4, "dispatched"), seen), true);
  seen.add("4");
  assert.equal(shouldAnnounce(dispatch(4, "dispatched"), seen), false);
  assert.equal(shouldAnnounce(dispatch(5, "acknowledged"), seen), false);
  assert.equal(shouldAnnounce(null, seen), false);
});

test("distance, arrival time and destination", () => {
  // One degree of latitude is about 111.2 km.
  const d = distanceMeters({ lat: 30, lon: 120 }, { lat: 31, lon: 120 });
  assert.ok(Math.abs(d - 111195) < 100, String(d));
  assert.equal(distanceMeters({ lat: 30, lon: 120 }, { lat: 30, lon: 120 }), 0);
  assert.equal(distanceMeters(null, { lat: 30, lon: 120 }), null);
  assert.equal(arrivalAt(dispatch(1, "dispatched")), Date.parse("2024-05-01T10:05:12Z"));
  assert.equal(arrivalAt(dispatch(1, "dispatched", { eta_s: null })), null);
  assert.equal(arrivalAt(dispatch(1, "dispatched", { created_at: "soon" })), null);
  assert.deepEqual(destinationOf(dispatch(1, "dispatched", { order: { destination: { lat: 30.27, lon: 120.15 } } })), { lat: 30.27, lon: 120.15 });
  assert.equal(destinationOf(dispatch(1, "dispatched", { order: { destination: { lat: "x", lon: 1 } } })), null);
  assert.equal(destinationOf(dispatch(1, "dispatched")), null);
});

test("a route in the order becomes Leaflet lines; anything else none", () => {
  assert.deepEqual(routeLines({ route: { type: "LineString", coordinates: [[120.1, 30.2], [120.2, 30.3]] } }), [[[30.2, 120.1], [30.3, 120.2]]]);
  assert.deepEqual(routeLines({ route: { type: "MultiLineString", coordinates: [[[120.1, 30.2], [120.2, 30.3]], [[1, 2]]] } }), [[[30.2, 120.1], [30.3, 120.2]]]);
  assert.deepEqual(routeLines({ route: { type: "Point", coordinates: [1, 2] } }), []);
  assert.deepEqual(routeLines({}), []);
  assert.deepEqual(routeLines(null), []);
});

test("supplies to collect join the order's pickups with their requisitions' status", () => {
  const d = dispatch(17, "acknowledged", {
    order: { supplies: [{ requisition_id: 3, depot_id: "DEP-N", depot_name: "North depot", lat: 30.26, lon: 120.15, item: "blankets", quantity: 50, unit: "pcs" }] },
    supplies: [
      { id: 3, dispatch_id: 17, depot_id: "DEP-N", item: "blankets", quantity: 50, unit: "pcs", status: "committed" },
      { id: 4, dispatch_id: 17, depot_id: "DEP-S", item: "water", quantity: 10, unit: "L", status: "requested" },
    ],
  });
  assert.deepEqual(supplyList(d), [
    { id: "3", depot_id: "DEP-N", depot_name: "North depot", lat: 30.26, lon: 120.15, item: "blankets", quantity: 50, unit: "pcs", status: "committed" },
    { id: "4", depot_id: "DEP-S", depot_name: "DEP-S", lat: NaN, lon: NaN, item: "water", quantity: 10, unit: "L", status: "requested" },
  ]);
  assert.deepEqual(supplyList(null), []);
  assert.deepEqual(supplyList(dispatch(1, "dispatched")), []);
});

test("a geolocation fix becomes the position body; unknown speed and heading are left out", () => {
  const fix = { coords: { latitude: 30.2605, longitude: 120.1605, speed: 4.5, heading: 90 }, timestamp: Date.parse("2024-05-01T10:00:00Z") };
  assert.deepEqual(positionBody(fix), { lat: 30.2605, lon: 120.1605, time: "2024-05-01T10:00:00.000Z", speed: 4.5, heading: 90 });
  const still = { coords: { latitude: 30, longitude: 120, speed: null, heading: NaN }, timestamp: 0 };
  assert.deepEqual(positionBody(still), { lat: 30, lon: 120 });
  assert.equal(positionBody({ coords: { latitude: 91, longitude: 0 } }), null);
  assert.equal(positionBody({ coords: { latitude: NaN, longitude: 0 } }), null);
  assert.equal(positionBody(null), null);
});

test("positions go at most one per interval, newest first, and a standing unit only on the heartbeat", () => {
  const r = new PositionReporter({ minIntervalMs: 2500, heartbeatMs: 60000, minMoveM: 10 });
  assert.equal(r.wait(0), null);
  const a = { lat: 30, lon: 120 };
  r.offer(a);
  assert.equal(r.wait(1000), 0);
  assert.equal(r.take(), a);
  assert.equal(r.wait(1000), null); // in flight
  r.settle(a, 1000, "sent");
  // A moved fix waits out the interval; a newer one replaces it.
  r.offer({ lat: 30.01, lon: 120 });
  const b = { lat: 30.02, lon: 120 };
  r.offer(b);
  assert.equal(r.wait(2000), 1500);
  assert.equal(r.take(), b);
  r.settle(b, 3500, "sent");
  // Barely moved: held until the heartbeat.
  r.offer({ lat: 30.02001, lon: 120 });
  assert.equal(r.wait(6000), 57500);
  assert.equal(r.wait(63500), 0);
});

test("a refused position is retried later unless a newer fix came; a dropped one is gone", () => {
  const r = new PositionReporter({ minIntervalMs: 2500 });
  const a = { lat: 30, lon: 120 };
  r.offer(a);
  r.take();
  r.settle(a, 0, "retry", 2500);
  assert.equal(r.wait(1000), 1500);
  assert.equal(r.take(), a);
  const b = { lat: 31, lon: 120 };
  r.offer(b); // came while a was in flight
  r.settle(a, 4000, "retry", 5000);
  assert.equal(r.take(), b);
  r.settle(b, 4000, "drop");
  assert.equal(r.wait(99999), null);
});

test("task actions: a note needs text, finishing needs a result", () => {
  assert.deepEqual(taskRequest("start"), { body: { status: "in_progress" } });
  assert.deepEqual(taskRequest("note", "  "), { error: "fieldapp.note_needed" });
  assert.deepEqual(taskRequest("note", " Hydrant 3 works "), { body: { note: "Hydrant 3 works" } });
  assert.deepEqual(taskRequest("done", ""), { error: "tasks.need_result" });
  assert.deepEqual(taskRequest("failed", "No access"), { body: { status: "failed", result: "No access" } });
  assert.deepEqual(taskRequest("note", "x".repeat(MAX_NOTE + 1)), { error: "fieldapp.text_long" });
  assert.deepEqual(taskRequest("reassign", "U-2"), { error: "fieldapp.step_unknown" });
});

test("templates split at their placeholders, in both languages", () => {
  assert.deepEqual(splitTemplate("at {depot}"), [{ text: "at " }, { name: "depot" }]);
  assert.deepEqual(splitTemplate("{a}{b} c"), [{ name: "a" }, { name: "b" }, { text: " c" }]);
  assert.deepEqual(splitTemplate("plain"), [{ text: "plain" }]);
  assert.deepEqual(splitTemplate(""), []);
  assert.deepEqual(splitTemplate(DICTS["zh-CN"]["fieldapp.depot"]), [{ text: "领取点：" }, { name: "depot" }]);
});

test("clock time is HH:MM local", () => {
  const d = new Date(2024, 4, 1, 7, 5, 59);
  assert.equal(clockTime(d.getTime()), "07:05");
  setLang("en");
  assert.equal(clockTime(NaN), t("field.none"));
});

test("every key field.js asks for is in both dictionaries and translated", () => {
  const source = readFileSync(new URL("../static/field.js", import.meta.url), "utf8")
    + readFileSync(new URL("../static/page.js", import.meta.url), "utf8")
    + readFileSync(new URL("../field.html", import.meta.url), "utf8");
  const keys = new Set([
    ...[...source.matchAll(/\bt\("([a-z_]+(?:\.[A-Za-z_-]+)+)"/g)].map((m) => m[1]),
    ...[...source.matchAll(/\b(?:tNodes|data-i18n(?:-[a-z-]+)?=)\(?"([a-z_]+(?:\.[A-Za-z_-]+)+)"/g)].map((m) => m[1]),
    ...[...source.matchAll(/\berror: "([a-z_]+\.[a-z_]+)"/g)].map((m) => m[1]),
  ]);
  // Keys built from a vocabulary.
  for (const s of STEP_ORDER) keys.add(`fieldapp.step.${s}`);
  for (const g of ["off", "prompt", "asking", "on", "denied", "unavailable", "unsupported"]) keys.add(`fieldapp.geo.${g}`);
  for (const s of ["requested", "committed", "delivered", "released"]) keys.add(`fieldapp.supply_status.${s}`);
  for (const a of ["done", "failed"]) keys.add(`fieldapp.task_${a}`);
  assert.ok(keys.size > 60, `found only ${keys.size} keys`);
  const missing = [...keys].filter((k) => !has(k) || !(k in DICTS["zh-CN"]));
  assert.deepEqual(missing, []);
  for (const k of [...keys].filter((key) => key.startsWith("fieldapp."))) {
    assert.notEqual(DICTS.en[k], DICTS["zh-CN"][k], `${k} is not translated`);
  }
});
