-- Fencing for clusters: a node writes a room's changes only while its claim
-- on the room is the newest. epoch is the directory revision of the claim
-- that fenced the room last; 0 until a cluster node claims it.
ALTER TABLE rooms ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

-- posecast_hold locks a room's row against fencing until the transaction
-- ends and checks that the writer's claim is the one that fenced it last
-- (claim 0: a node without claims, never refused). It raises PCNRF for a
-- room that does not exist and PCFEN for a writer whose claim is not the
-- newest, so that a pipelined batch stops there and writes nothing.
CREATE FUNCTION posecast_hold(room text, claim bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
BEGIN
    SELECT epoch INTO current FROM rooms WHERE id = room FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'room % not found', room USING ERRCODE = 'PCNRF';
    END IF;
    IF claim <> 0 AND claim <> current THEN
        RAISE EXCEPTION 'room % is fenced at epoch %, not %', room, current, claim USING ERRCODE = 'PCFEN';
    END IF;
END
$$;
