"""The resource vocabulary: unit types, capabilities, unit statuses and supply items.

Pure. Response plans (:mod:`dispatch.plans`) name capabilities and supply
items; the demo city, the database seed and the console must use the same
names, so they are defined once, here. ``dispatch`` never imports ``command``
(design section 4), so the dependency runs the other way: anything in
``command`` that needs these names imports them from this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from sensors.alarms import UNIT_STATUSES as UNIT_STATUSES

# UNIT_STATUSES is re-exported, not redefined: the status vocabulary is part
# of the MQTT contract (units/{id}/status), so sensors.alarms owns it, and
# the CHECK on units.status in migrations/0001 repeats it.

UNIT_TYPES: tuple[str, ...] = (
    "fire_engine",
    "ambulance",
    "rescue_squad",
    "hazmat_team",
    "police",
    "public_health_team",
    "utility_crew",
    "volunteer_team",
)

#: What a plan can ask for. A unit may have several; it still fills one need.
CAPABILITIES: tuple[str, ...] = (
    "fire_suppression",
    "water_rescue",
    "medical",
    "hazmat",
    "traffic_control",
    "rescue",
    "power",
    "epidemiology",
    "search",
)

#: The capabilities a unit of each type has unless its record says otherwise
#: (the demo city gives every unit exactly these).
CAPABILITIES_OF_TYPE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "fire_engine": ("fire_suppression", "rescue"),
        "ambulance": ("medical",),
        "rescue_squad": ("rescue", "search", "water_rescue"),
        "hazmat_team": ("hazmat", "rescue"),
        "police": ("traffic_control", "search"),
        "public_health_team": ("epidemiology", "medical"),
        "utility_crew": ("power",),
        "volunteer_team": ("search", "rescue"),
    }
)

#: A capability as a countable noun, for messages a commander reads
#: ("needs 2 hazmat teams"). Every plural is the noun plus "s".
CAPABILITY_NOUNS: Mapping[str, str] = MappingProxyType(
    {
        "fire_suppression": "firefighting unit",
        "water_rescue": "water rescue unit",
        "medical": "medical unit",
        "hazmat": "hazmat team",
        "traffic_control": "traffic control unit",
        "rescue": "rescue unit",
        "power": "power crew",
        "epidemiology": "epidemiology team",
        "search": "search team",
    }
)

#: Supply items a depot can stock, with the unit each is counted in. A plan's
#: supply need and a depot's stock of the same item must use the same unit,
#: since quantities in different units cannot be added.
SUPPLY_ITEMS: Mapping[str, str] = MappingProxyType(
    {
        "tents": "pcs",
        "drinking_water": "L",
        "sandbags": "bags",
        "pumps": "pcs",
        "generators": "pcs",
        "medical_kits": "kits",
        "protective_suits": "sets",
        "blankets": "pcs",
        "life_jackets": "pcs",
        "food_rations": "boxes",
        "disinfectant": "L",
        "n95_masks": "boxes",
    }
)


def describe_units(capability: str, count: int) -> str:
    """A count of units with a capability, in words: ``"2 hazmat teams"``.

    Args:
        capability: any capability; one outside ``CAPABILITY_NOUNS`` is
            described from its name ("x_ray" -> "x ray unit").
        count: how many.
    Returns:
        The count and the noun, plural unless ``count`` is 1.
    """
    noun = CAPABILITY_NOUNS.get(capability, capability.replace("_", " ") + " unit")
    return f"{count} {noun}{'' if count == 1 else 's'}"
