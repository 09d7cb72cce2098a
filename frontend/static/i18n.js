// Console strings in zh-CN and English.
//
// Every string the console shows goes through t(key). Both dictionaries carry
// the same keys (console.js checks this at start-up and logs any gap), and a
// missing key falls back to English, then to the key itself, so a gap shows as
// a readable word rather than "undefined".
//
// Vocabularies mirror the contracts: alarm kinds (design.md section 3), incident
// categories/statuses, unit statuses and user roles (migrations/0001_schema.sql).
// Values outside them (new unit types, site kinds...) are shown raw through
// label(group, value).

export const LANGS = ["zh-CN", "en"];
const STORAGE_KEY = "emergency-console.lang";

export const DICTS = {
  en: {
    "app.title": "Emergency Command Console",
    "app.subtitle": "City emergency coordination",
    "lang.label": "Language",
    "lang.zh-CN": "中文",
    "lang.en": "English",

    "login.title": "Sign in",
    "login.intro": "Sign in with your command-centre account.",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.busy": "Signing in…",
    "login.failed": "Sign-in failed.",
    "login.network": "Cannot reach the server. Check the connection and try again.",
    "login.expired": "Your session has ended. Please sign in again.",
    "logout": "Sign out",
    "user.role": "Role",

    "conn.label": "Connection",
    "conn.connecting": "connecting",
    "conn.live": "live",
    "conn.reconnecting": "reconnecting",
    "conn.offline": "offline",
    "conn.seq": "seq {seq}",
    "conn.retry_in": "retry in {s} s",

    "sound.on": "Sound on",
    "sound.off": "Sound off",
    "sound.title": "Beep when a new incident opens",

    "queue.title": "Incident queue",
    "queue.count": "{n} active",
    "queue.count_filtered": "{n} of {total} active",
    "queue.empty": "No active incidents.",
    "queue.empty_filtered": "No incidents match the filters.",
    "queue.alarms": "{n} alarms",
    "queue.alarm_one": "1 alarm",
    "queue.new": "NEW",
    "queue.no_location": "no location",
    "queue.more": "+{n} more, lower priority (narrow the filters to see them)",

    "filter.kind": "Kind",
    "filter.status": "Status",
    "filter.all_kinds": "All kinds",
    "filter.all_statuses": "All active",

    "age.now": "just now",
    "age.s": "{n} s",
    "age.m": "{n} min",
    "age.h": "{n} h {m} min",
    "age.d": "{n} d {h} h",

    "layer.incidents": "Incidents",
    "layer.units": "Units",
    "layer.depots": "Supply depots",
    "layer.hazards": "Hazards",
    "layer.sites": "Protection targets",
    "layer.districts": "Districts",
    "layer.roads": "Roads",
    "layer.tiles": "Base map tiles",
    "layer.legend": "Legend",
    "map.label": "Map",

    "legend.severity": "Severity",
    "legend.unit_status": "Units",

    "field.id": "ID",
    "field.title": "Title",
    "field.kind": "Kind",
    "field.category": "Category",
    "field.severity": "Severity",
    "field.status": "Status",
    "field.district": "District",
    "field.alarm_count": "Alarms",
    "field.opened_at": "Opened",
    "field.updated_at": "Updated",
    "field.age": "Age",
    "field.location": "Location",
    "field.last_alarm": "Last alarm",
    "field.callsign": "Call sign",
    "field.type": "Type",
    "field.position_at": "Position time",
    "field.name": "Name",
    "field.stock": "Stock",
    "field.capacity": "Capacity",
    "field.beds": "Beds",
    "field.speed_kmh": "Speed limit",
    "field.attrs": "Details",
    "field.none": "—",
    "field.sensor": "Sensor {sensor} · alarm {alarm} · {time}",
    "field.coords": "{lat}, {lon}",
    "field.kmh": "{n} km/h",

    "msg.ws_error": "Server: {message}",
    "msg.load_failed": "Could not load {what}.",
    "msg.dismiss": "Dismiss",
    "msg.unknown_error": "Unknown error",
    "msg.leaflet_missing": "The map library did not load from /vendor/leaflet/. Run npm install in frontend/ and reload.",
    "msg.what.districts": "districts",
    "msg.what.roads": "roads",
    "msg.what.depots": "supply depots",
    "msg.what.hazards": "hazards",
    "msg.what.sites": "protection targets",
    "msg.new_incident": "New incident: {title}",

    "kind.fire": "Fire",
    "kind.smoke": "Smoke",
    "kind.gas_leak": "Gas leak",
    "kind.flood": "Flood",
    "kind.water_level": "Water level",
    "kind.earthquake": "Earthquake",
    "kind.landslide": "Landslide",
    "kind.traffic_accident": "Traffic accident",
    "kind.structure_collapse": "Structure collapse",
    "kind.hazmat": "Hazardous materials",
    "kind.power_outage": "Power outage",
    "kind.air_quality": "Air quality",
    "kind.medical": "Medical",
    "kind.crowd": "Crowd",
    "kind.other": "Other",

    "category.natural_disaster": "Natural disaster",
    "category.accident": "Accident",
    "category.public_health": "Public health",
    "category.public_security": "Public security",

    "severity.Extreme": "Extreme",
    "severity.Severe": "Severe",
    "severity.Moderate": "Moderate",
    "severity.Minor": "Minor",
    "severity.Unknown": "Unknown",

    "status.new": "New",
    "status.confirmed": "Confirmed",
    "status.responding": "Responding",
    "status.contained": "Contained",
    "status.resolved": "Resolved",
    "status.closed": "Closed",
    "status.false_alarm": "False alarm",
    "status.cancelled": "Cancelled",

    "unit_status.available": "Available",
    "unit_status.dispatched": "Dispatched",
    "unit_status.en_route": "En route",
    "unit_status.on_scene": "On scene",
    "unit_status.returning": "Returning",
    "unit_status.out_of_service": "Out of service",

    "unit_type.fire_engine": "Fire engine",
    "unit_type.ladder": "Ladder truck",
    "unit_type.rescue": "Rescue team",
    "unit_type.water_rescue": "Water rescue",
    "unit_type.hazmat": "Hazmat team",
    "unit_type.ambulance": "Ambulance",
    "unit_type.medical": "Medical team",
    "unit_type.police": "Police",
    "unit_type.engineering": "Engineering crew",
    "unit_type.utility": "Utility crew",
    "unit_type.command": "Command vehicle",
    "unit_type.supply": "Supply vehicle",
    "unit_type.volunteer": "Volunteer team",

    "role.admin": "Administrator",
    "role.commander": "Commander",
    "role.dispatcher": "Dispatcher",
    "role.field": "Field unit",
    "role.viewer": "Viewer",

    "hazard_kind.chemical_plant": "Chemical plant",
    "hazard_kind.gas_station": "Gas station",
    "hazard_kind.underpass": "Flood-prone underpass",
    "hazard_kind.flood_zone": "Flood zone",
    "hazard_kind.landslide_zone": "Landslide zone",
    "hazard_kind.reservoir": "Reservoir",
    "hazard_kind.dam": "Dam",
    "hazard_kind.pipeline": "Pipeline",
    "hazard_kind.construction": "Construction site",

    "site_kind.school": "School",
    "site_kind.kindergarten": "Kindergarten",
    "site_kind.hospital": "Hospital",
    "site_kind.care_home": "Care home",
    "site_kind.station": "Station",
    "site_kind.shelter": "Shelter",
    "site_kind.stadium": "Stadium",
    "site_kind.mall": "Shopping centre",

    "stock.item": "{item}: {quantity} {unit}",

    "detail.label": "Incident details",
    "detail.close": "← Back to queue",
    "detail.loading": "Loading…",
    "detail.refreshing": "Updating…",
    "detail.network": "Cannot reach the server.",
    "detail.load_failed": "Could not load the incident.",
    "detail.rec_failed": "Could not load the recommendation.",
    "detail.sensor_count": "Sensors",
    "detail.alarms": "Recent alarms",
    "detail.no_alarms": "No alarms.",
    "detail.alarm_line": "{time} · sensor {sensor} · {severity}",
    "detail.more_alarms": "+{n} earlier alarms",
    "detail.hazards": "Hazards nearby",
    "detail.sites": "Protection targets nearby",
    "detail.no_places": "None in the affected area.",
    "detail.place_line": "{kind} · {distance}",

    "rec.title": "Recommendation",
    "rec.plan": "Plan: {name}",
    "rec.complete": "Fully covered",
    "rec.shortfalls": "Shortfalls",
    "rec.shortfall": "{what}: needs {needed}, {available} available",
    "rec.units": "Units",
    "rec.needed": "{chosen} of {n} needed",
    "rec.none_chosen": "No unit available.",
    "rec.unit_line": "{callsign} ({type}) · {eta}",
    "rec.eta": "ETA {n} min",
    "rec.unreachable": "unreachable",
    "rec.late": "late",
    "rec.alternates": "Alternates: {list}",
    "rec.supplies": "Supplies",
    "rec.supply_line": "{item}: {filled} of {needed} {unit}",
    "rec.source_line": "{name}: {quantity} · {eta}",
    "rec.no_supplies": "No supplies in this plan.",

    "dist.m": "{n} m",
    "dist.km": "{n} km",

    "capability.fire_suppression": "Fire suppression",
    "capability.rescue": "Rescue",
    "capability.search": "Search",
    "capability.water_rescue": "Water rescue",
    "capability.hazmat": "Hazmat",
    "capability.medical": "Medical",
    "capability.epidemiology": "Epidemiology",
    "capability.traffic_control": "Traffic control",
    "capability.power": "Power repair",

    "actions.title": "Status",
    "actions.none": "No further status change.",
    "action.confirmed": "Confirm",
    "action.responding": "Responding",
    "action.contained": "Contained",
    "action.resolved": "Resolved",
    "action.closed": "Close",
    "action.false_alarm": "False alarm",
    "action.cancelled": "Cancel incident",
    "action.reopen": "Reopen",
    "action.reason_for": "Reason for “{action}”",
    "action.reason_placeholder": "Why? (kept in the timeline)",
    "action.reason_needed": "A reason is required.",
    "action.submit": "Confirm",
    "action.back": "Back",
    "action.busy": "Working…",
    "action.failed": "The request failed.",

    "dispatch.send": "Dispatch recommended",
    "dispatch.sending": "Dispatching…",
    "dispatch.summary": "Selected: units {units} · supplies {supplies}",
    "dispatch.pick_unit": "Tick at least one unit (the first one ticked collects the supplies).",
    "dispatch.no_units": "No recommended unit to send.",
    "dispatch.ended": "The incident has ended: reopen it to dispatch.",
    "dispatch.covered": "covered",
    "dispatch.send_qty": "send {n} {unit}",
    "dispatch.done": "Dispatched:",
    "dispatch.result_line": "{callsign} · {eta}",
    "dispatch.pick_label": "Send {name}",

    "dispatches.title": "Dispatched units",
    "dispatches.none": "No unit dispatched yet.",
    "dispatches.active_count": "{n} active",
    "dispatches.ack_in": "acknowledge within {t}",
    "dispatches.ack_passed": "acknowledgement deadline passed",
    "dispatches.overdue": "Overdue: not acknowledged in time",
    "dispatches.offer_line": "Next best: {callsign} ({type}) · {eta}",
    "dispatches.send": "Send {callsign}",
    "dispatches.no_offer": "No other free unit can take over.",
    "dispatches.call_back": "Call back",
    "dispatches.supply": "collects {quantity} {unit} {item} at {depot}",
    "dispatches.reason": "Reason: {reason}",

    "dispatch_status.dispatched": "Dispatched",
    "dispatch_status.acknowledged": "Acknowledged",
    "dispatch_status.en_route": "En route",
    "dispatch_status.on_scene": "On scene",
    "dispatch_status.cleared": "Cleared",
    "dispatch_status.declined": "Declined",
    "dispatch_status.cancelled": "Called back",

    "tasks.title": "Tasks",
    "tasks.none": "No tasks.",
    "tasks.due": "due {time}",
    "tasks.due_in": "{t} left",
    "tasks.late": "{t} late",
    "tasks.overdue": "Overdue",
    "tasks.owner": "Owner: {owner}",
    "tasks.result": "Result: {result}",
    "tasks.last_note": "{author}: {note}",
    "tasks.done": "Mark done",
    "tasks.result_label": "Result",
    "tasks.result_placeholder": "What was done?",
    "tasks.need_result": "Enter the result first.",
    "tasks.add_title": "Add a task",
    "tasks.field_title": "Task",
    "tasks.field_due": "Due in (min)",
    "tasks.field_owner": "Owner unit (optional)",
    "tasks.add": "Add task",
    "tasks.need_title": "Say what needs doing.",
    "tasks.title_long": "At most 200 characters.",
    "tasks.bad_due": "Due in: a positive number of minutes, at most 43200 (30 days).",

    "task_status.open": "Open",
    "task_status.in_progress": "In progress",
    "task_status.done": "Done",
    "task_status.failed": "Failed",
    "task_status.cancelled": "Cancelled",

    "timeline.title": "Timeline",
    "timeline.none": "Nothing recorded yet.",
    "timeline.more": "+{n} earlier entries",
    "timeline.change": "{from} → {to}",
    "timeline.unit": "unit {unit}",
    "timeline.offer": "offered {callsign}",

    "timeline_action.opened": "Opened",
    "timeline_action.dispatch": "Dispatch",
    "timeline_action.dispatch.status": "Dispatch progress",
    "timeline_action.dispatch.overdue": "Dispatch overdue",
    "timeline_action.status": "Status",
    "timeline_action.reopen": "Reopened",
    "timeline_action.task": "Task",
    "timeline_action.task.overdue": "Task overdue",
  },

  "zh-CN": {
    "app.title": "应急协同指挥平台",
    "app.subtitle": "城市应急协同指挥",
    "lang.label": "语言",
    "lang.zh-CN": "中文",
    "lang.en": "English",

    "login.title": "登录",
    "login.intro": "请使用指挥中心账号登录。",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.busy": "正在登录…",
    "login.failed": "登录失败。",
    "login.network": "无法连接服务器，请检查网络后重试。",
    "login.expired": "会话已结束，请重新登录。",
    "logout": "退出登录",
    "user.role": "角色",

    "conn.label": "连接",
    "conn.connecting": "连接中",
    "conn.live": "实时",
    "conn.reconnecting": "重连中",
    "conn.offline": "离线",
    "conn.seq": "序号 {seq}",
    "conn.retry_in": "{s} 秒后重试",

    "sound.on": "声音开",
    "sound.off": "声音关",
    "sound.title": "新事件发生时提示音",

    "queue.title": "事件队列",
    "queue.count": "{n} 个进行中",
    "queue.count_filtered": "{n} / {total} 个进行中",
    "queue.empty": "暂无进行中的事件。",
    "queue.empty_filtered": "没有符合筛选条件的事件。",
    "queue.alarms": "{n} 条告警",
    "queue.alarm_one": "1 条告警",
    "queue.new": "新",
    "queue.no_location": "无位置",
    "queue.more": "另有 {n} 个较低优先级事件（请缩小筛选范围查看）",

    "filter.kind": "类型",
    "filter.status": "状态",
    "filter.all_kinds": "全部类型",
    "filter.all_statuses": "全部进行中",

    "age.now": "刚刚",
    "age.s": "{n} 秒",
    "age.m": "{n} 分钟",
    "age.h": "{n} 小时 {m} 分",
    "age.d": "{n} 天 {h} 小时",

    "layer.incidents": "事件",
    "layer.units": "救援力量",
    "layer.depots": "物资储备库",
    "layer.hazards": "风险隐患",
    "layer.sites": "防护目标",
    "layer.districts": "行政区",
    "layer.roads": "道路",
    "layer.tiles": "底图瓦片",
    "layer.legend": "图例",
    "map.label": "地图",

    "legend.severity": "严重程度",
    "legend.unit_status": "救援力量",

    "field.id": "编号",
    "field.title": "标题",
    "field.kind": "类型",
    "field.category": "类别",
    "field.severity": "严重程度",
    "field.status": "状态",
    "field.district": "行政区",
    "field.alarm_count": "告警数",
    "field.opened_at": "发生时间",
    "field.updated_at": "更新时间",
    "field.age": "持续",
    "field.location": "位置",
    "field.last_alarm": "最新告警",
    "field.callsign": "呼号",
    "field.type": "类型",
    "field.position_at": "定位时间",
    "field.name": "名称",
    "field.stock": "库存",
    "field.capacity": "容纳人数",
    "field.beds": "床位",
    "field.speed_kmh": "限速",
    "field.attrs": "详情",
    "field.none": "—",
    "field.sensor": "传感器 {sensor} · 告警 {alarm} · {time}",
    "field.coords": "{lat}, {lon}",
    "field.kmh": "{n} 公里/小时",

    "msg.ws_error": "服务器：{message}",
    "msg.load_failed": "无法加载{what}。",
    "msg.dismiss": "关闭",
    "msg.unknown_error": "未知错误",
    "msg.leaflet_missing": "地图库未能从 /vendor/leaflet/ 加载。请在 frontend/ 目录运行 npm install 后刷新。",
    "msg.what.districts": "行政区",
    "msg.what.roads": "道路",
    "msg.what.depots": "物资储备库",
    "msg.what.hazards": "风险隐患",
    "msg.what.sites": "防护目标",
    "msg.new_incident": "新事件：{title}",

    "kind.fire": "火灾",
    "kind.smoke": "烟雾",
    "kind.gas_leak": "燃气泄漏",
    "kind.flood": "洪涝",
    "kind.water_level": "水位超限",
    "kind.earthquake": "地震",
    "kind.landslide": "山体滑坡",
    "kind.traffic_accident": "交通事故",
    "kind.structure_collapse": "建筑坍塌",
    "kind.hazmat": "危化品",
    "kind.power_outage": "停电",
    "kind.air_quality": "空气质量",
    "kind.medical": "医疗急救",
    "kind.crowd": "人员聚集",
    "kind.other": "其他",

    "category.natural_disaster": "自然灾害",
    "category.accident": "事故灾难",
    "category.public_health": "公共卫生事件",
    "category.public_security": "社会安全事件",

    "severity.Extreme": "特别重大",
    "severity.Severe": "重大",
    "severity.Moderate": "较大",
    "severity.Minor": "一般",
    "severity.Unknown": "未知",

    "status.new": "新建",
    "status.confirmed": "已确认",
    "status.responding": "处置中",
    "status.contained": "已控制",
    "status.resolved": "已解决",
    "status.closed": "已关闭",
    "status.false_alarm": "误报",
    "status.cancelled": "已取消",

    "unit_status.available": "待命",
    "unit_status.dispatched": "已派遣",
    "unit_status.en_route": "途中",
    "unit_status.on_scene": "到达现场",
    "unit_status.returning": "返回中",
    "unit_status.out_of_service": "停用",

    "unit_type.fire_engine": "消防车",
    "unit_type.ladder": "云梯车",
    "unit_type.rescue": "救援队",
    "unit_type.water_rescue": "水上救援队",
    "unit_type.hazmat": "危化品处置队",
    "unit_type.ambulance": "救护车",
    "unit_type.medical": "医疗队",
    "unit_type.police": "公安",
    "unit_type.engineering": "工程抢险队",
    "unit_type.utility": "市政抢修队",
    "unit_type.command": "指挥车",
    "unit_type.supply": "物资车",
    "unit_type.volunteer": "志愿者队伍",

    "role.admin": "管理员",
    "role.commander": "指挥员",
    "role.dispatcher": "调度员",
    "role.field": "现场队伍",
    "role.viewer": "观察员",

    "hazard_kind.chemical_plant": "化工厂",
    "hazard_kind.gas_station": "加油站",
    "hazard_kind.underpass": "易涝下穿通道",
    "hazard_kind.flood_zone": "洪涝风险区",
    "hazard_kind.landslide_zone": "滑坡风险区",
    "hazard_kind.reservoir": "水库",
    "hazard_kind.dam": "水坝",
    "hazard_kind.pipeline": "管线",
    "hazard_kind.construction": "建筑工地",

    "site_kind.school": "学校",
    "site_kind.kindergarten": "幼儿园",
    "site_kind.hospital": "医院",
    "site_kind.care_home": "养老院",
    "site_kind.station": "车站",
    "site_kind.shelter": "避难场所",
    "site_kind.stadium": "体育场馆",
    "site_kind.mall": "商场",

    "stock.item": "{item}：{quantity} {unit}",

    "detail.label": "事件详情",
    "detail.close": "← 返回事件队列",
    "detail.loading": "加载中…",
    "detail.refreshing": "更新中…",
    "detail.network": "无法连接服务器。",
    "detail.load_failed": "无法加载事件。",
    "detail.rec_failed": "无法加载处置建议。",
    "detail.sensor_count": "传感器",
    "detail.alarms": "最近告警",
    "detail.no_alarms": "暂无告警。",
    "detail.alarm_line": "{time} · 传感器 {sensor} · {severity}",
    "detail.more_alarms": "另有 {n} 条较早告警",
    "detail.hazards": "周边危险源",
    "detail.sites": "周边防护目标",
    "detail.no_places": "影响范围内没有。",
    "detail.place_line": "{kind} · {distance}",

    "rec.title": "处置建议",
    "rec.plan": "预案：{name}",
    "rec.complete": "力量充足",
    "rec.shortfalls": "力量缺口",
    "rec.shortfall": "{what}：需要 {needed}，可用 {available}",
    "rec.units": "救援力量",
    "rec.needed": "需要 {n}，已选 {chosen}",
    "rec.none_chosen": "没有可用队伍。",
    "rec.unit_line": "{callsign}（{type}）· {eta}",
    "rec.eta": "预计 {n} 分钟到达",
    "rec.unreachable": "无法到达",
    "rec.late": "超时",
    "rec.alternates": "备选：{list}",
    "rec.supplies": "物资",
    "rec.supply_line": "{item}：{filled} / {needed} {unit}",
    "rec.source_line": "{name}：{quantity} · {eta}",
    "rec.no_supplies": "本预案不需要物资。",

    "dist.m": "{n} 米",
    "dist.km": "{n} 公里",

    "capability.fire_suppression": "灭火",
    "capability.rescue": "救援",
    "capability.search": "搜索",
    "capability.water_rescue": "水域救援",
    "capability.hazmat": "危化品处置",
    "capability.medical": "医疗救护",
    "capability.epidemiology": "流行病学",
    "capability.traffic_control": "交通管制",
    "capability.power": "电力抢修",

    "actions.title": "状态",
    "actions.none": "没有可变更的状态。",
    "action.confirmed": "确认",
    "action.responding": "转为处置中",
    "action.contained": "已控制",
    "action.resolved": "已解决",
    "action.closed": "关闭",
    "action.false_alarm": "误报",
    "action.cancelled": "撤销事件",
    "action.reopen": "重新打开",
    "action.reason_for": "“{action}”的原因",
    "action.reason_placeholder": "请填写原因（记入时间线）",
    "action.reason_needed": "请填写原因。",
    "action.submit": "确定",
    "action.back": "返回",
    "action.busy": "处理中…",
    "action.failed": "操作失败。",

    "dispatch.send": "一键派遣推荐力量",
    "dispatch.sending": "派遣中…",
    "dispatch.summary": "已选：队伍 {units} · 物资 {supplies}",
    "dispatch.pick_unit": "请至少勾选一支队伍（勾选的第一支队伍领取物资）。",
    "dispatch.no_units": "没有可派遣的推荐队伍。",
    "dispatch.ended": "事件已结束，重新打开后才能派遣。",
    "dispatch.covered": "已有力量",
    "dispatch.send_qty": "派 {n} {unit}",
    "dispatch.done": "已派遣：",
    "dispatch.result_line": "{callsign} · {eta}",
    "dispatch.pick_label": "派遣 {name}",

    "dispatches.title": "已派遣力量",
    "dispatches.none": "尚未派遣力量。",
    "dispatches.active_count": "{n} 支执行中",
    "dispatches.ack_in": "须在 {t} 内确认",
    "dispatches.ack_passed": "已超过确认时限",
    "dispatches.overdue": "超时未确认",
    "dispatches.offer_line": "次优：{callsign}（{type}）· {eta}",
    "dispatches.send": "改派 {callsign}",
    "dispatches.no_offer": "没有其他空闲队伍可以接替。",
    "dispatches.call_back": "召回",
    "dispatches.supply": "在 {depot} 领取 {item} {quantity} {unit}",
    "dispatches.reason": "原因：{reason}",

    "dispatch_status.dispatched": "已派遣",
    "dispatch_status.acknowledged": "已接收",
    "dispatch_status.en_route": "途中",
    "dispatch_status.on_scene": "到达现场",
    "dispatch_status.cleared": "已完成",
    "dispatch_status.declined": "已拒绝",
    "dispatch_status.cancelled": "已召回",

    "tasks.title": "督办任务",
    "tasks.none": "暂无任务。",
    "tasks.due": "{time} 到期",
    "tasks.due_in": "剩余 {t}",
    "tasks.late": "已超时 {t}",
    "tasks.overdue": "已逾期",
    "tasks.owner": "负责：{owner}",
    "tasks.result": "结果：{result}",
    "tasks.last_note": "{author}：{note}",
    "tasks.done": "标记完成",
    "tasks.result_label": "处理结果",
    "tasks.result_placeholder": "完成情况",
    "tasks.need_result": "请先填写处理结果。",
    "tasks.add_title": "新增任务",
    "tasks.field_title": "任务内容",
    "tasks.field_due": "期限（分钟）",
    "tasks.field_owner": "负责队伍（可选）",
    "tasks.add": "添加任务",
    "tasks.need_title": "请填写任务内容。",
    "tasks.title_long": "任务内容最多 200 个字符。",
    "tasks.bad_due": "期限须为正数分钟，最多 43200 分钟（30 天）。",

    "task_status.open": "待办",
    "task_status.in_progress": "进行中",
    "task_status.done": "已完成",
    "task_status.failed": "未完成",
    "task_status.cancelled": "已取消",

    "timeline.title": "处置时间线",
    "timeline.none": "暂无记录。",
    "timeline.more": "另有 {n} 条较早记录",
    "timeline.change": "{from} → {to}",
    "timeline.unit": "队伍 {unit}",
    "timeline.offer": "建议改派 {callsign}",

    "timeline_action.opened": "立案",
    "timeline_action.dispatch": "派遣",
    "timeline_action.dispatch.status": "派遣进展",
    "timeline_action.dispatch.overdue": "派遣超时",
    "timeline_action.status": "状态变更",
    "timeline_action.reopen": "重新打开",
    "timeline_action.task": "任务",
    "timeline_action.task.overdue": "任务逾期",
  },
};

/** The vocabularies, in display order, for selects and legends. */
export const KINDS = [
  "fire", "smoke", "gas_leak", "flood", "water_level", "earthquake", "landslide",
  "traffic_accident", "structure_collapse", "hazmat", "power_outage", "air_quality",
  "medical", "crowd", "other",
];
export const SEVERITIES = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
export const ACTIVE_STATUSES = ["new", "confirmed", "responding", "contained"];
export const TERMINAL_STATUSES = ["resolved", "closed", "cancelled", "false_alarm"];
export const UNIT_STATUSES = [
  "available", "dispatched", "en_route", "on_scene", "returning", "out_of_service",
];

let current = "en";
const listeners = new Set();

/** Pick the language: stored choice, else navigator.language, else English. */
export function detectLang(storage, navigatorLanguages) {
  let stored = null;
  try {
    stored = storage ? storage.getItem(STORAGE_KEY) : null;
  } catch (_) {
    stored = null; // storage can be disabled (privacy mode); fall through.
  }
  if (stored && LANGS.includes(stored)) return stored;
  for (const tag of navigatorLanguages || []) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

export function getLang() {
  return current;
}

/**
 * Switch language, remember it and notify listeners.
 * @param {string} lang one of LANGS
 * @param {Storage} [storage] where to remember the choice
 */
export function setLang(lang, storage) {
  if (!LANGS.includes(lang)) return;
  current = lang;
  if (storage) {
    try {
      storage.setItem(STORAGE_KEY, lang);
    } catch (_) {
      /* storage full or disabled: the choice lasts for this page only. */
    }
  }
  if (typeof document !== "undefined") document.documentElement.lang = lang;
  for (const fn of listeners) fn(lang);
}

/** Call fn(lang) after every language change. */
export function onLangChange(fn) {
  listeners.add(fn);
}

/**
 * Translate key, substituting {name} placeholders from params.
 * @param {string} key
 * @param {Object<string, *>} [params]
 * @returns {string}
 */
export function t(key, params) {
  let s = DICTS[current][key];
  if (s === undefined) s = DICTS.en[key];
  if (s === undefined) s = key;
  if (params) {
    s = s.replace(/\{(\w+)\}/g, (m, name) =>
      Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : m);
  }
  return s;
}

/** Whether key is in the dictionaries. */
export function has(key) {
  return Object.prototype.hasOwnProperty.call(DICTS.en, key);
}

/**
 * Label for a vocabulary value: t("group.value") when known, else the raw value
 * (e.g. a unit type the dictionaries do not list yet).
 */
export function label(group, value) {
  if (value === null || value === undefined || value === "") return t("field.none");
  const key = `${group}.${value}`;
  return has(key) ? t(key) : String(value);
}

/** Keys present in one dictionary but not the other (for a start-up check and tests). */
export function missingKeys() {
  const en = Object.keys(DICTS.en);
  const zh = Object.keys(DICTS["zh-CN"]);
  return {
    zh: en.filter((k) => !(k in DICTS["zh-CN"])),
    en: zh.filter((k) => !(k in DICTS.en)),
  };
}

/**
 * Fill static markup: [data-i18n] sets textContent, [data-i18n-placeholder],
 * [data-i18n-title] and [data-i18n-aria-label] set those attributes.
 */
export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    el.setAttribute("title", t(el.dataset.i18nTitle));
  }
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
}
