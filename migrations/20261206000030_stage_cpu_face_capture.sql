-- The stages photo and document rules gained: FACE (finding the face, and the framing it
-- drives) and CAPTURE (finding, flattening and evening out a photographed page). NULL when
-- the stage did not run, as for the other stage columns; with them, the stage columns still add
-- up to total_cpu_seconds.
ALTER TABLE cpu_metrics
    ADD COLUMN face_cpu_seconds DOUBLE PRECISION,
    ADD COLUMN capture_cpu_seconds DOUBLE PRECISION;
