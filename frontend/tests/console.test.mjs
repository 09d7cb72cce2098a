// Pure-core tests for the console (no browser): `npm test` in frontend/.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  ConsoleState, queueOf, formatAge, escapeHtml, classToken, isTerminal,
  etaMinutes, formatEta, formatDistance, bboxFromQuery,
} from "../static/console.js";
import { backoffDelay } from "../static/page.js";
import { missingKeys, t, setLang, label, detectLang, KINDS, SEVERITIES, UNIT_STATUSES, ACTIVE_STATUSES, TERMINAL_STATUSES, has } from "../static/i18n.js";

const incident = (id, severity, updated, extra = {}) => ({
  id, kind: "fire", category: "accident", severity, status: "new", lat: 30.2, lon: 120.1,
  area: null, district: "d1", title: `T${id}`, alarm_count: 1, opened_at: updated, updated_at: updated, ...extra,
});

test("snapshot replaces state and drops terminal incidents", () => {
  const s = new ConsoleState();
  s.apply({ type: "event", seq: 1, name: "incident.opened", data: incident(77, "Minor", "2024-05-01T00:00:00Z") });
  const c = s.apply({
    type: "snapshot", seq: 10,
    incidents: [incident(1, "Minor", "2024-05-01T10:00:00.123456+08:00"), incident(9, "Severe", "2024-05-01T09:00:00Z", { status: "closed" })],
    units: [{ id: "U1", callsign: "E1", type: "fire_engine", status: "available", lat: 30, lon: 120, position_at: null }],
  });
  assert.equal(c.reset, true);
  assert.equal(s.lastSeq, 10);
  assert.deepEqual([...s.incidents.keys()], ["1"]);
  assert.equal(s.units.get("U1").callsign, "E1");
});

test("events at or below the last seq are ignored", () => {
  const s = new ConsoleState();
  s.apply({ type: "snapshot", seq: 10, incidents: [], units: [] });
  let c = s.apply({ type: "event", seq: 10, name: "incident.opened", data: incident(3, "Severe", "2024-05-01T11:00:00Z") });
  assert.equal(c.applied, 0);
  assert.equal(s.incidents.size, 0);
  c = s.apply({
    type: "batch", events: [
      { type: "event", seq: 11, name: "incident.opened", data: incident(3, "Severe", "2024-05-01T11:00:00Z") },
      { type: "event", seq: 11, name: "incident.opened", data: incident(4, "Severe", "2024-05-01T12:00:00Z") },
      { type: "event", seq: 9, name: "incident.opened", data: incident(5, "Severe", "2024-05-01T12:00:00Z") },
    ],
  });
  assert.deepEqual(c.opened, ["3"]);
  assert.equal(s.lastSeq, 11);
});

test("updates merge, closes remove, units update only present fields", () => {
  const s = new ConsoleState();
  s.apply({
    type: "snapshot", seq: 1, incidents: [incident(1, "Minor", "2024-05-01T10:00:00Z")],
    units: [{ id: "U1", callsign: "E1", type: "fire_engine", status: "available", lat: 30, lon: 120 }],
  });
  s.apply({ type: "event", seq: 2, name: "incident.updated", data: { id: 1, alarm_count: 5 } });
  assert.equal(s.incidents.get("1").alarm_count, 5);
  assert.equal(s.incidents.get("1").title, "T1");
  s.apply({ type: "event", seq: 3, name: "unit.moved", data: { id: "U1", lat: 30.5, lon: 120.5 } });
  s.apply({ type: "event", seq: 4, name: "unit.status", data: { id: "U1", status: "en_route" } });
  assert.deepEqual(
    { ...s.units.get("U1") },
    { id: "U1", callsign: "E1", type: "fire_engine", status: "en_route", lat: 30.5, lon: 120.5 },
  );
  s.apply({ type: "event", seq: 5, name: "dispatch.created", data: { id: "D1" } });
  assert.equal(s.lastSeq, 5);
  const c = s.apply({ type: "event", seq: 6, name: "incident.closed", data: { id: 1 } });
  assert.ok(c.incidents.has("1"));
  assert.equal(s.incidents.size, 0);
  s.apply({ type: "event", seq: 7, name: "incident.opened", data: incident(2, "Minor", "2024-05-01T10:00:00Z") });
  s.apply({ type: "event", seq: 8, name: "incident.updated", data: { id: 2, status: "false_alarm" } });
  assert.equal(s.incidents.size, 0);
});

test("error frames are reported", () => {
  const c = new ConsoleState().apply({ type: "error", error: { code: "forbidden", message: "no" } });
  assert.equal(c.error.message, "no");
});

test("queue order: severity, then newest update; terminal and filtered out", () => {
  const list = [
    incident(1, "Minor", "2024-05-01T10:00:00Z"),
    incident(2, "Extreme", "2024-05-01T09:00:00Z"),
    incident(3, "Severe", "2024-05-01T11:00:00Z"),
    incident(4, "Severe", "2024-05-01T12:00:00Z", { kind: "flood" }),
    incident(5, "Extreme", "2024-05-01T13:00:00Z", { status: "resolved" }),
    incident(6, "Bogus", "2024-05-01T13:00:00Z"),
  ].map((i) => ({ ...i, id: String(i.id) }));
  assert.deepEqual(queueOf(list).map((i) => i.id), ["2", "4", "3", "1", "6"]);
  assert.deepEqual(queueOf(list, { kind: "flood" }).map((i) => i.id), ["4"]);
  assert.deepEqual(queueOf(list, { status: "confirmed" }).map((i) => i.id), []);
});

test("backoff grows from 0.5 s to 10 s with jitter", () => {
  assert.equal(backoffDelay(0, () => 1), 500);
  assert.equal(backoffDelay(0, () => 0), 250);
  assert.equal(backoffDelay(3, () => 1), 4000);
  assert.equal(backoffDelay(50, () => 1), 10000);
  assert.equal(backoffDelay(50, () => 0), 5000);
});

test("escaping and class tokens", () => {
  assert.equal(escapeHtml(`<img src=x onerror="a">&'`), "&lt;img src=x onerror=&quot;a&quot;&gt;&amp;&#39;");
  assert.equal(classToken("Extreme", SEVERITIES), "Extreme");
  assert.equal(classToken("x onclick=1", SEVERITIES), "unknown");
  assert.ok(isTerminal("false_alarm") && !isTerminal("new"));
});

test("dictionaries are complete in both languages", () => {
  assert.deepEqual(missingKeys(), { zh: [], en: [] });
  const groups = [["kind", KINDS], ["severity", SEVERITIES], ["unit_status", UNIT_STATUSES],
    ["status", [...ACTIVE_STATUSES, ...TERMINAL_STATUSES]],
    ["category", ["natural_disaster", "accident", "public_health", "public_security"]],
    ["conn", ["connecting", "live", "reconnecting", "offline"]]];
  for (const [group, values] of groups) {
    for (const v of values) assert.ok(has(`${group}.${v}`), `${group}.${v}`);
  }
});

test("language switching and formatting", () => {
  setLang("zh-CN");
  assert.equal(t("kind.fire"), "火灾");
  assert.equal(label("unit_type", "hovercraft"), "hovercraft");
  assert.equal(formatAge(1.7e12 - 125_000, 1.7e12), "2 分钟");
  setLang("en");
  assert.equal(t("conn.live"), "live");
  assert.equal(formatAge(1.7e12 - 3 * 3600e3 - 60e3, 1.7e12), "3 h 1 min");
  assert.equal(detectLang(null, ["zh-TW"]), "zh-CN");
  assert.equal(detectLang(null, ["fr-FR"]), "en");
  const store = new Map([["emergency-console.lang", "zh-CN"]]);
  assert.equal(detectLang({ getItem: (k) => store.get(k) ?? null }, ["en-US"]), "zh-CN");
});

test("incident.updated and incident.closed are reported as updated, opened is not", () => {
  const s = new ConsoleState();
  s.apply({ type: "snapshot", seq: 1, incidents: [], units: [] });
  let c = s.apply({ type: "event", seq: 2, name: "incident.opened", data: incident(5, "Minor", "2024-05-01T00:00:00Z") });
  assert.deepEqual(c.opened, ["5"]);
  assert.deepEqual(c.updated, []);
  c = s.apply({ type: "event", seq: 3, name: "incident.updated", data: { id: 5, severity: "Severe" } });
  assert.deepEqual(c.updated, ["5"]);
  c = s.apply({ type: "event", seq: 3, name: "incident.updated", data: { id: 5, severity: "Extreme" } });
  assert.deepEqual(c.updated, [], "a replayed event is not an update");
  c = s.apply({ type: "event", seq: 4, name: "incident.closed", data: { id: 5 } });
  assert.deepEqual(c.updated, ["5"]);
});

test("ETA minutes round up, null or bad is unreachable; distances in m or km", () => {
  setLang("en", null);
  assert.equal(etaMinutes(0), 1);
  assert.equal(etaMinutes(59), 1);
  assert.equal(etaMinutes(61), 2);
  assert.equal(etaMinutes(null), null);
  assert.equal(etaMinutes(undefined), null);
  assert.equal(etaMinutes("x"), null);
  assert.equal(formatEta(600), "ETA 10 min");
  assert.equal(formatEta(null), "unreachable");
  assert.equal(formatDistance(349.6), "350 m");
  assert.equal(formatDistance(1234), "1.2 km");
  assert.equal(formatDistance(23456), "23 km");
  assert.equal(formatDistance(null), "—");
  setLang("zh-CN", null);
  assert.equal(formatEta(null), "无法到达");
  assert.equal(formatDistance(80), "80 米");
  setLang("en", null);
});

test("a wall display's bounding box comes from ?bbox=west,south,east,north", () => {
  assert.deepEqual(bboxFromQuery("?bbox=120.1,30.2,120.2,30.3"), [120.1, 30.2, 120.2, 30.3]);
  assert.equal(bboxFromQuery("?bbox=120.1,30.2,east,30.3"), null);
  assert.equal(bboxFromQuery("?bbox=1,2,3"), null);
  assert.equal(bboxFromQuery(""), null);
});
