-- Road routing and nearest-unit search (issue #4).

CREATE EXTENSION IF NOT EXISTS pgrouting;

-- Nearest available units are found with KNN on true (spherical) distance,
-- which needs the index on the geography, not on the degrees.
CREATE INDEX units_position_geog_gist ON units USING gist ((position::geography));
CREATE INDEX units_status ON units (status);
