"""Typed keys for the state each cleanup context puts on the application."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from command.correlation import Rules
from command.delivery import Delivery
from command.hub import Hub
from command.metrics import Metrics
from command.settings import Settings
from dispatch.plans import Plans
from sensors.mqtt import MqttSession

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", Hub)
MQTT = web.AppKey("mqtt", MqttSession)
PLANS = web.AppKey("plans", Plans)
RULES = web.AppKey("rules", Rules)
DELIVERY = web.AppKey("delivery", Delivery)
