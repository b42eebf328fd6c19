-- Photo rules that frame by the face carry their bands (head height, eye line, centring) as
-- the rule file's `[face]` table, stored as JSON; NULL for rules that say nothing about the face.
-- Additive: existing rows keep NULL and the saliency crop.
ALTER TABLE portal_schemas ADD COLUMN face JSONB;
