-- When each rule version's values were last checked against its public source: `[source] checked`
-- of its file in portal-rules/, which `rythmiq migrate` loads after the SQL migrations.
ALTER TABLE portal_schemas ADD COLUMN source_checked_on DATE;

-- The version-1 rows were checked against their sources on 2026-11-29, as their files record;
-- with the date stored, loading the unchanged files adds no version 2.
UPDATE portal_schemas
SET source_checked_on = DATE '2026-11-29'
WHERE version = 1
  AND slug IN ('neet-ug-2026-photo', 'neet-ug-2026-signature', 'jee-main-2026-photo',
               'jee-main-2026-signature', 'passport-india-photo', 'ibps-2026-photo',
               'ibps-2026-signature', 'aadhaar-update-document', 'college-generic-photo');
