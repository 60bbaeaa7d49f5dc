-- Rooms and the components of their environment entities. An entity is the
-- set of rows that share (room_id, entity_id): it exists while it has a
-- component. Avatars are never stored.
CREATE TABLE rooms (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Rooms are listed oldest first.
CREATE INDEX rooms_by_age ON rooms (created_at, id);

CREATE TABLE components (
    room_id        text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    entity_id      text NOT NULL,
    component_name text NOT NULL,
    value          jsonb NOT NULL,
    -- Its prefix (room_id) serves "all entities of a room", and
    -- (room_id, entity_id) the changes to one entity.
    PRIMARY KEY (room_id, entity_id, component_name)
);

-- "Entities of a room having component name", covering: the entity ids come
-- from the index alone.
CREATE INDEX components_by_name ON components (room_id, component_name, entity_id);
