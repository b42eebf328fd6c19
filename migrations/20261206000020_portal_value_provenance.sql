-- Which of a rule version's values the portal itself states (`[source] portal_values` of its file
-- in portal-rules/); the others are ours, chosen where the portal states none. NULL on rows
-- loaded before this was recorded.
ALTER TABLE portal_schemas ADD COLUMN source_portal_values TEXT[];

-- The active rows hold the values their files describe; recording the provenance of those same
-- values is not a new version, so loading the unchanged files adds none.
UPDATE portal_schemas AS p
SET source_portal_values = v.portal_values
FROM (VALUES
    ('aadhaar-update-document', ARRAY['format', 'max_kb']),
    ('college-generic-photo', ARRAY[]::TEXT[]),
    ('ibps-2026-photo', ARRAY['width', 'height', 'dpi', 'format', 'min_kb', 'max_kb', 'background']),
    ('ibps-2026-signature', ARRAY['width', 'height', 'dpi', 'format', 'min_kb', 'max_kb', 'background']),
    ('jee-main-2026-photo', ARRAY['format', 'min_kb', 'max_kb', 'background']),
    ('jee-main-2026-signature', ARRAY['format', 'min_kb', 'max_kb']),
    ('neet-ug-2026-photo', ARRAY['format', 'min_kb', 'background']),
    ('neet-ug-2026-signature', ARRAY['format', 'background']),
    ('passport-india-photo', ARRAY['width', 'height', 'format', 'max_kb', 'background'])
) AS v (slug, portal_values)
WHERE p.slug = v.slug AND p.active;
