-- What a rule asks of the text OCR reads in an upload (`text_check` in its file): `none`,
-- `english` (a hand-written declaration must be there and be English) or `no_capitals` (IBPS
-- refuses a signature in capital letters).
ALTER TABLE portal_schemas ADD COLUMN text_check TEXT NOT NULL DEFAULT 'none'
    CHECK (text_check IN ('none', 'english', 'no_capitals'));

-- IBPS's signature rule always said "not in capital letters" (its file's comments); recording
-- that on the active row is not a new version of the rule.
UPDATE portal_schemas SET text_check = 'no_capitals'
WHERE slug = 'ibps-2026-signature' AND active;
