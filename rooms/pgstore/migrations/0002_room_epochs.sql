-- Fencing for clusters: a node writes a room's changes only while its claim
-- on the room is the newest. (epoch_generation, epoch) is the claim that
-- fenced the room last: the generation of the cluster's directory and the
-- claim's revision in it; (0, 0) until a cluster node claims the room.
ALTER TABLE rooms
    ADD COLUMN epoch_generation bigint NOT NULL DEFAULT 0,
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

-- posecast_hold locks a room's row against fencing until the transaction
-- ends and checks that the writer's claim is the one that fenced it last
-- (the claim (0, 0): a node without claims, never refused). It raises PCNRF
-- for a room that does not exist and PCFEN for a writer whose claim is not
-- the newest, so that a pipelined batch stops there and writes nothing.
CREATE FUNCTION posecast_hold(room text, generation bigint, claim bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r rooms%ROWTYPE;
BEGIN
    SELECT * INTO r FROM rooms WHERE id = room FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'room % not found', room USING ERRCODE = 'PCNRF';
    END IF;
    IF (generation, claim) <> (0, 0) AND (generation, claim) <> (r.epoch_generation, r.epoch) THEN
        RAISE EXCEPTION 'room % is fenced by generation % epoch %, not % %', room,
            r.epoch_generation, r.epoch, generation, claim USING ERRCODE = 'PCFEN';
    END IF;
END
$$;
