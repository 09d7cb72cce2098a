// Pure-core tests for acting on an incident from the console: dispatch, lifecycle, tasks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  ConsoleState, lifecycleActions, LIFECYCLE_ACTIONS, dispatchChoices, dispatchBody, offerBody, upsertById,
  offersFromTimeline, timelineGroup, formatCountdown, taskRequest, isActiveDispatch, isOpenTask,
  DISPATCH_STATUSES, TASK_STATUSES, MAX_DUE_MINUTES,
} from "../static/console.js";
import { DICTS, has, missingKeys } from "../static/i18n.js";

const unit = (id, callsign, extra = {}) => ({
  id, callsign, type: "fire_engine", capabilities: ["fire_suppression"], distance_m: 900, eta_s: 120, late: false, ...extra,
});

// The shape of dispatch/planner.py recommendation_to_wire.
const REC = {
  plan: { name: "fire/Moderate" },
  assignments: [
    { capability: "medical", needed: 1, chosen: [unit("U-3", "Medic 3", { type: "ambulance", eta_s: 95 })], alternates: [] },
    { capability: "rescue", needed: 1, chosen: [unit("U-2", "Engine 2")], alternates: [unit("U-4", "Engine 4")] },
    { capability: "fire_suppression", needed: 3, chosen: [unit("U-1", "Engine 1"), unit("U-4", "Engine 4", { late: true })], alternates: [] },
  ],
  supplies: [
    {
      item: "blankets", needed: 50, unit: "pcs", filled: 50,
      sources: [
        { depot_id: "DEP-1", name: "North depot", quantity: 30, in_stock: 30, distance_m: 1200, eta_s: 200 },
        { depot_id: "DEP-2", name: "South depot", quantity: 20, in_stock: 80, distance_m: 4000, eta_s: 600 },
      ],
    },
    { item: "tents", needed: 5, unit: "pcs", filled: 0, sources: [] },
  ],
  shortfalls: [],
  complete: false,
};

test("lifecycle buttons follow the server's table, reopen only once ended, reasons where required", () => {
  const actions = (status) => lifecycleActions(status).map((a) => a.action);
  assert.deepEqual(actions("new"), ["confirmed", "responding", "false_alarm", "cancelled"]);
  assert.deepEqual(actions("confirmed"), ["responding", "contained", "resolved", "false_alarm", "cancelled"]);
  assert.deepEqual(actions("responding"), ["contained", "resolved", "false_alarm", "cancelled"]);
  assert.deepEqual(actions("contained"), ["responding", "resolved"]);
  assert.deepEqual(actions("resolved"), ["closed", "reopen"]);
  for (const ended of ["closed", "false_alarm", "cancelled"]) assert.deepEqual(actions(ended), ["reopen"]);
  assert.deepEqual(actions("bogus"), []);
  assert.deepEqual(actions(undefined), []);
  assert.deepEqual(actions("constructor"), []);
  const reasons = Object.fromEntries(lifecycleActions("new").map((a) => [a.action, a.needsReason]));
  assert.deepEqual(reasons, { confirmed: false, responding: false, false_alarm: true, cancelled: true });
  assert.equal(lifecycleActions("closed")[0].needsReason, true);
});

test("dispatch body: every chosen unit with its capability, supplies carried by the first unit", () => {
  const choices = dispatchChoices(REC, []);
  assert.deepEqual(choices.units.map((u) => [u.key, u.picked, u.covered]), [
    ["unit:U-3", true, false], ["unit:U-2", true, false], ["unit:U-1", true, false], ["unit:U-4", true, false],
  ]);
  assert.equal(choices.units[3].late, true);
  assert.deepEqual(dispatchBody(choices), {
    units: [
      { id: "U-3", capability: "medical" },
      { id: "U-2", capability: "rescue" },
      { id: "U-1", capability: "fire_suppression" },
      { id: "U-4", capability: "fire_suppression" },
    ],
    supplies: [
      { depot_id: "DEP-1", item: "blankets", quantity: 30, unit_id: "U-3" },
      { depot_id: "DEP-2", item: "blankets", quantity: 20, unit_id: "U-3" },
    ],
  });
});

test("unticking units and supplies leaves them out; the first ticked unit carries", () => {
  const choices = dispatchChoices(REC, []);
  const picks = new Map([["unit:U-3", false], ["supply:DEP-2:blankets", false]]);
  assert.deepEqual(dispatchBody(choices, picks), {
    units: [{ id: "U-2", capability: "rescue" }, { id: "U-1", capability: "fire_suppression" }, { id: "U-4", capability: "fire_suppression" }],
    supplies: [{ depot_id: "DEP-1", item: "blankets", quantity: 30, unit_id: "U-2" }],
  });
  // No unit: nothing can carry the supplies, and the server needs a unit.
  const none = new Map(choices.units.map((u) => [u.key, false]));
  assert.deepEqual(dispatchBody(choices, none), { units: [], supplies: [] });
});

test("what the incident's dispatches already cover starts unticked, and can be ticked again", () => {
  const dispatches = [
    { id: 1, unit_id: "U-9", capability: "medical", status: "en_route", supplies: [
      { item: "blankets", quantity: 40, status: "committed" },
    ] },
    { id: 2, unit_id: "U-8", capability: "fire_suppression", status: "cleared", supplies: [] },
    // Called back or declined: their need is open again, their supplies back in stock.
    { id: 3, unit_id: "U-7", capability: "rescue", status: "cancelled", supplies: [
      { item: "blankets", quantity: 50, status: "released" },
    ] },
    { id: 4, unit_id: "U-6", capability: "fire_suppression", status: "declined", supplies: [] },
  ];
  const choices = dispatchChoices(REC, dispatches);
  const picked = Object.fromEntries(choices.units.map((u) => [u.id, u.picked]));
  // medical 1 needed, 1 going; fire_suppression 3 needed, 1 went: both chosen engines still wanted.
  assert.deepEqual(picked, { "U-3": false, "U-2": true, "U-1": true, "U-4": true });
  assert.equal(choices.units[0].covered, true);
  // 50 blankets needed, 40 on their way: 10 more, from the nearest depot; the other lot starts unticked.
  assert.deepEqual(choices.supplies.map((s) => [s.key, s.quantity, s.picked]), [
    ["supply:DEP-1:blankets", 10, true], ["supply:DEP-2:blankets", 20, false],
  ]);
  assert.deepEqual(dispatchBody(choices).supplies, [{ depot_id: "DEP-1", item: "blankets", quantity: 10, unit_id: "U-2" }]);
  const more = dispatchBody(choices, new Map([["unit:U-3", true], ["supply:DEP-2:blankets", true]]));
  assert.equal(more.units[0].id, "U-3");
  assert.deepEqual(more.supplies.map((s) => [s.depot_id, s.quantity, s.unit_id]), [["DEP-1", 10, "U-3"], ["DEP-2", 20, "U-3"]]);
});

test("dispatch choices survive odd input: no rec, junk entries, a unit chosen twice, bad quantities", () => {
  assert.deepEqual(dispatchChoices(null), { units: [], supplies: [] });
  const odd = {
    assignments: [
      null,
      { capability: null, needed: 1, chosen: [unit("U-1", "E1"), { callsign: "no id" }] },
      { capability: "rescue", needed: 2, chosen: [unit("U-1", "E1"), unit("U-5", "E5")] },
    ],
    supplies: [{ item: "water", needed: 10, sources: [{ depot_id: "D", quantity: 0 }, { depot_id: "", quantity: 5 }, { depot_id: "E", quantity: 2.7 }] }],
  };
  const choices = dispatchChoices(odd, "not a list");
  assert.deepEqual(choices.units.map((u) => u.id), ["U-1", "U-5"]);
  assert.deepEqual(dispatchBody(choices).units, ["U-1", { id: "U-5", capability: "rescue" }]);
  assert.deepEqual(choices.supplies.map((s) => [s.depot_id, s.quantity]), [["E", 2]]);
});

test("the overdue offer is sent with its capability", () => {
  assert.deepEqual(offerBody({ unit_id: "U-4", callsign: "Engine 4", capability: "fire_suppression", eta_s: 240 }),
    { units: [{ id: "U-4", capability: "fire_suppression" }] });
  assert.deepEqual(offerBody({ unit_id: "U-4", capability: null }), { units: ["U-4"] });
});

test("events merge into lists by id, keeping what they do not carry", () => {
  const list = [{ id: 7, unit_id: "U-1", status: "dispatched", supplies: [{ item: "blankets" }], overdue_at: null }];
  // dispatch.overdue carries no supplies: they stay.
  const merged = upsertById(list, { id: 7, status: "dispatched", overdue_at: "2024-05-01T10:00:00Z" });
  assert.equal(merged[0].overdue_at, "2024-05-01T10:00:00Z");
  assert.deepEqual(merged[0].supplies, [{ item: "blankets" }]);
  assert.equal(list[0].overdue_at, null, "the input list is not changed");
  const added = upsertById(merged, { id: "8", unit_id: "U-2", status: "dispatched" });
  assert.deepEqual(added.map((x) => String(x.id)), ["7", "8"]);
  assert.deepEqual(upsertById(undefined, { id: 1 }), [{ id: 1 }]);
  assert.deepEqual(upsertById(list, { status: "x" }), list);
});

test("offers come back from the timeline after a refetch", () => {
  const offers = offersFromTimeline([
    { action: "dispatch", detail: { dispatch_id: 7 } },
    { action: "dispatch.overdue", detail: { dispatch_id: 7, unit_id: "U-1", offer: { unit_id: "U-2", callsign: "Engine 2" } } },
    { action: "dispatch.overdue", detail: { dispatch_id: 9, unit_id: "U-3", offer: null } },
    { action: "dispatch.overdue", detail: null },
    null,
  ]);
  assert.deepEqual([...offers.keys()], ["7", "9"]);
  assert.equal(offers.get("7").callsign, "Engine 2");
  assert.equal(offers.get("9"), null);
  assert.equal(offersFromTimeline(undefined).size, 0);
});

test("timeline from/to vocabularies, countdowns, active and open states", () => {
  assert.equal(timelineGroup("status"), "status");
  assert.equal(timelineGroup("reopen"), "status");
  assert.equal(timelineGroup("dispatch.status"), "dispatch_status");
  assert.equal(timelineGroup("task"), "task_status");
  assert.equal(timelineGroup("dispatch.overdue"), null);
  assert.equal(formatCountdown(0), "0:00");
  assert.equal(formatCountdown(89_001), "1:30");
  assert.equal(formatCountdown(3_600_000 + 61_000), "1:01:01");
  assert.equal(formatCountdown(-5), "0:00");
  assert.ok(isActiveDispatch({ status: "en_route" }) && !isActiveDispatch({ status: "cleared" }) && !isActiveDispatch(null));
  assert.ok(isOpenTask({ status: "in_progress" }) && !isOpenTask({ status: "done" }));
});

test("the add-task form: a title, minutes to seconds, an optional owner", () => {
  assert.deepEqual(taskRequest({ title: "  Check hydrants ", dueMinutes: "15", owner: " U-3 " }),
    { body: { title: "Check hydrants", due_in_s: 900, owner_unit: "U-3" } });
  assert.deepEqual(taskRequest({ title: "x", dueMinutes: 0.25, owner: "" }), { body: { title: "x", due_in_s: 15 } });
  assert.deepEqual(taskRequest({ title: " ", dueMinutes: "5" }), { error: "tasks.need_title" });
  assert.deepEqual(taskRequest({ title: "x".repeat(201), dueMinutes: "5" }), { error: "tasks.title_long" });
  for (const bad of ["", "0", "-3", "abc", String(MAX_DUE_MINUTES + 1), undefined]) {
    assert.deepEqual(taskRequest({ title: "x", dueMinutes: bad }), { error: "tasks.bad_due" }, String(bad));
  }
  assert.deepEqual(taskRequest({ title: "x", dueMinutes: String(MAX_DUE_MINUTES) }).body.due_in_s, 30 * 86400);
  assert.deepEqual(taskRequest(), { error: "tasks.need_title" });
});

test("dispatch.* and task.* events are reported as activity; others are not", () => {
  const s = new ConsoleState();
  s.apply({ type: "snapshot", seq: 1, incidents: [], units: [] });
  const c = s.apply({ type: "batch", events: [
    { type: "event", seq: 2, name: "dispatch.created", data: { id: 5, incident_id: 9, unit_id: "U-1", status: "dispatched" } },
    { type: "event", seq: 3, name: "task.overdue", data: { id: 6, incident_id: 9, title: "T" } },
    { type: "event", seq: 4, name: "sensor.offline", data: { id: "S-1" } },
    { type: "event", seq: 3, name: "dispatch.updated", data: { id: 5, incident_id: 9, status: "cancelled" } },
  ] });
  assert.deepEqual(c.activity.map((a) => [a.name, a.data.id]), [["dispatch.created", 5], ["task.overdue", 6]]);
  assert.equal(c.applied, 2);
  assert.equal(s.lastSeq, 4);
});

test("every string the console asks for exists in both languages", () => {
  assert.deepEqual(missingKeys(), { zh: [], en: [] });
  // The console's strings, and those of the header and sign-in it shares with the field app.
  const source = readFileSync(new URL("../static/console.js", import.meta.url), "utf8")
    + readFileSync(new URL("../static/page.js", import.meta.url), "utf8");
  const keys = new Set([...source.matchAll(/\bt\("([a-z_]+(?:\.[A-Za-z_-]+)+)"/g)].map((m) => m[1]));
  assert.ok(keys.size > 100, `found only ${keys.size} keys`);
  // Keys handed over as data (the add-task form's errors) are asked for too.
  for (const m of source.matchAll(/\berror: "([a-z_]+\.[a-z_]+)"/g)) keys.add(m[1]);
  const missing = [...keys].filter((k) => !has(k) || !(k in DICTS["zh-CN"]));
  assert.deepEqual(missing, []);
  const groups = [["dispatch_status", DISPATCH_STATUSES], ["task_status", TASK_STATUSES], ["action", LIFECYCLE_ACTIONS],
    ["timeline_action", ["opened", "dispatch", "dispatch.status", "dispatch.overdue", "status", "reopen", "task", "task.overdue"]]];
  for (const [group, values] of groups) {
    for (const v of values) {
      const key = `${group}.${v}`;
      assert.ok(has(key) && key in DICTS["zh-CN"], key);
      assert.notEqual(DICTS.en[key], DICTS["zh-CN"][key], `${key} is not translated`);
    }
  }
});
