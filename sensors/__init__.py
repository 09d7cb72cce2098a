"""Sensor input: alarm and CAP parsing (pure) and the MQTT adapter."""
