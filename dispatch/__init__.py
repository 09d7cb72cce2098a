"""Resources and response: units, plans, ranking, geolocation and dispatch orders."""
