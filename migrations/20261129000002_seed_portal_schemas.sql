-- Seed the first version of each portal rule new jobs use (version 1, active).
--
-- Every number below was checked against the public material named above its INSERT. Most portals
-- state only a file-size window and a format; pixel size and DPI are then ours, derived from the
-- paper size the portal names (e.g. 3.5 x 4.5 cm) at a stated DPI, and the comment says so.
-- KB windows are stored as the portal states them; `PortalRule::byte_window` reads min_kb as
-- KiB and max_kb as 1,000-byte KB, so an output inside it is accepted under either reading.
-- Where a source is a third-party page rather than the authority's own document, the comment
-- says so. Re-check each rule against the authority's notice when a new cycle opens and add a
-- version 2 rather than editing these rows.

-- NEET (UG) 2026, passport-size photograph.
-- Source: NTA, NEET (UG) 2026 application (neet.nta.nic.in), as reported in
--   "NEET UG 2026 registration to close soon: check NTA guidelines to upload image, signature"
--   (Financial Express, 2026-03-06)
--   https://www.financialexpress.com/jobs-career/education-neet-ug-2026-registration-to-close-soon-check-nta-guidelines-to-upload-image-signature-key-details-4164099/
--   and "NEET UG 2026 Registration: Documents Required, Size, Format" (PW, 2026)
--   https://www.pw.live/news/neet-ug-2026-registration-documents-required-size-format-nta
--   Both give: JPG/JPEG, 10 KB to 200 KB, white background, 80% face incl. ears visible.
-- NTA gives no pixel size or DPI. 200 x 230 px at 200 DPI and the 10-100 KB window are fixed
-- by our product spec; 10-100 KB sits inside NTA's 10-200 KB window.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('neet-ug-2026-photo', 1, 'NEET (UG) 2026 - Passport-size photograph', 'photo',
     200, 230, 200, 'jpeg', 10, 100,
     'neet_photo_{job_id}', 'white',
     'https://www.financialexpress.com/jobs-career/education-neet-ug-2026-registration-to-close-soon-check-nta-guidelines-to-upload-image-signature-key-details-4164099/',
     TRUE);

-- NEET (UG) 2026, signature.
-- Sources disagree on the window, so we store the window both readings accept:
--   * 4 KB to 30 KB, JPG, black ink on white paper: "NEET UG 2026 Registration: Documents
--     Required, Size, Format" (PW, 2026)
--     https://www.pw.live/news/neet-ug-2026-registration-documents-required-size-format-nta
--     (the same 4-30 KB as the NEET (UG) 2025 bulletin, per edexlive.com 2025-02-03);
--   * 10 KB to 100 KB, JPG: "NEET 2026 photo & signature upload specs", citing pp. 16-17 of the
--     NEET-UG 2026 Information Bulletin (third-party page)
--     https://utiltap.com/blog/neet-2026-photo-signature-upload-specs
--     which matches the 10-100 KB NTA adopted for JEE (Main) 2026 (see below).
-- Chosen: 10-30 KB, the overlap of both. Size not confirmed from source (NTA gives none);
-- chosen as 3.5 x 1.5 cm at 300 DPI = 413 x 177 px, the signature box used by NTA-style guides;
-- 300 DPI keeps the pen stroke legible and makes the 10 KB floor reachable.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('neet-ug-2026-signature', 1, 'NEET (UG) 2026 - Signature', 'signature',
     413, 177, 300, 'jpeg', 10, 30,
     'neet_signature_{job_id}', 'white',
     'https://www.pw.live/news/neet-ug-2026-registration-documents-required-size-format-nta',
     TRUE);

-- JEE (Main) 2026, photograph.
-- Source: NTA, JEE (Main) 2026 application (jeemain.nta.nic.in), as reported in
--   "JEE Main 2026 Application Form Closing on November 27: Check image specifications &
--   instructions for password" (Indian Express Education, Nov 2025)
--   https://education.indianexpress.com/news/jee-main-2026-application-form-closing-on-november-27-check-image-specifications-instructions-for-password-2518256
--   "Recent passport size photograph: 10 kb to 200 kb, JPG/JPEG". Corroborated by
--   https://findmycollege.com/exams/jee-main/photo-guidelines (2026 maximum cut from 300 KB,
--   the JEE (Main) 2025 limit, to 200 KB; white/light background, 80% face, ears visible).
-- NTA gives no pixel size or DPI: not confirmed from source; chosen as the usual passport size
-- 3.5 x 4.5 cm at 300 DPI = 413 x 531 px, which compresses well inside 10-200 KB.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('jee-main-2026-photo', 1, 'JEE (Main) 2026 - Photograph', 'photo',
     413, 531, 300, 'jpeg', 10, 200,
     'jee_main_photo_{job_id}', 'white',
     'https://education.indianexpress.com/news/jee-main-2026-application-form-closing-on-november-27-check-image-specifications-instructions-for-password-2518256',
     TRUE);

-- JEE (Main) 2026, signature.
-- Source: same Indian Express Education article (Nov 2025): "Signature: 10 kb to 100 kb,
--   JPG/JPEG"; corroborated by https://findmycollege.com/exams/jee-main/photo-guidelines
--   (2026 signature maximum raised to 100 KB). Older bulletins (JEE Main 2023/2024) said 4-30 KB.
-- NTA gives no pixel size or DPI: not confirmed from source; chosen as 3.5 x 1.5 cm at 300 DPI
-- = 413 x 177 px, same as the NEET signature.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('jee-main-2026-signature', 1, 'JEE (Main) 2026 - Signature', 'signature',
     413, 177, 300, 'jpeg', 10, 100,
     'jee_main_signature_{job_id}', 'white',
     'https://education.indianexpress.com/news/jee-main-2026-application-form-closing-on-november-27-check-image-specifications-instructions-for-password-2518256',
     TRUE);

-- Passport Seva (India), applicant photograph (ICAO-compliant rules, from Sept 2025).
-- Sources: MEA/Indian missions' ICAO photo guidelines, as reported in
--   "Indian embassies to accept only ICAO-compliant passport photos from September" (Sept 2025)
--   https://www.obnews.co/Flow/News/id/11777678.html
--   (colour, 630 x 810 px, plain white background, face 80-85% of frame, no digital edits);
--   and "630x810 Indian Passport Photo" (third-party guide)
--   https://www.photopass.ai/blog/630x810-pixel-photo-indian-passport
--   (exactly 630 x 810 px, 7:9, JPEG under 250 KB = 35 x 45 mm at ~457 DPI).
-- 630 x 810 px, JPEG, at most 250 KB are fixed by our spec and agree with these sources.
-- min_kb: not confirmed from an official source; 10 KB as stated by a third-party tool page
--   (https://mergeimages.net/ja/resize-photo-for/passport-seva, "10-250 KB"), and a 630 x 810
--   photo at usable JPEG quality is always larger than that anyway.
-- DPI: no source states one; chosen as 457 because 630 x 810 px is exactly 35 x 45 mm (India's
--   passport photo size) at 457 DPI, so the embedded DPI prints at the right size. The portal
--   reads only pixels and bytes.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('passport-india-photo', 1, 'Passport Seva (India) - Applicant photograph', 'photo',
     630, 810, 457, 'jpeg', 10, 250,
     'passport_photo_{job_id}', 'white',
     'https://www.photopass.ai/blog/630x810-pixel-photo-indian-passport',
     TRUE);

-- IBPS CRP (PO/MT, Clerk, RRB; 2025-26 cycle), photograph.
-- Source: IBPS notification "Guidelines for scanning and upload of documents", as reproduced in
--   "IBPS PO Photo and Signature Size 2025" (Guidely)
--   https://guidely.in/blog/ibps-po-photo-and-signature-size
--   "200 x 230 pixels (preferred), 20 KB - 50 KB, jpg/jpeg", "light-coloured, preferably white,
--   background", passport size 4.5 cm x 3.5 cm; and "Set the scanner resolution to a minimum of
--   200 dpi (dots per inch)" (same IBPS guideline, "Guidelines For Upload of Photograph &
--   Signature Scan", https://www.scribd.com/document/460586019/photo-upload-guide).
-- 200 x 230 px, 20-50 KB, 200 DPI are fixed by our spec and match IBPS.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('ibps-2026-photo', 1, 'IBPS CRP 2026 - Photograph', 'photo',
     200, 230, 200, 'jpeg', 20, 50,
     'ibps_photo_{job_id}', 'light',
     'https://guidely.in/blog/ibps-po-photo-and-signature-size',
     TRUE);

-- IBPS CRP (2025-26 cycle), signature.
-- Source: same IBPS guideline via https://guidely.in/blog/ibps-po-photo-and-signature-size :
--   "140 x 60 pixels (preferred), 10 KB - 20 KB, jpg/jpeg", signed in black ink on white paper,
--   not in capital letters; scanner resolution minimum 200 dpi.
-- 140 x 60 px and 10-20 KB are fixed by our spec; 200 DPI is IBPS's stated scan minimum.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('ibps-2026-signature', 1, 'IBPS CRP 2026 - Signature', 'signature',
     140, 60, 200, 'jpeg', 10, 20,
     'ibps_signature_{job_id}', 'white',
     'https://guidely.in/blog/ibps-po-photo-and-signature-size',
     TRUE);

-- UIDAI Aadhaar online (self-service) update, supporting document (PoI/PoA/DoB proof).
-- Source: "Update your Aadhaar data" (Vikaspedia, Government of India portal), online update
--   step 3: "Upload Documents ... (Note: Size less than 2 MB; file format JPEG, PNG or PDF)"
--   https://en.vikaspedia.in/e-governance/online-citizen-services/government-to-citizen-services-g2c/all-about-aadhaar/update-your-aadhaar-data
-- We produce PDF (one of the three accepted formats). max_kb 2000: 2,000,000 bytes, under 2 MB
--   in either reading. min_kb 0: UIDAI states no minimum.
-- Page size and DPI: not confirmed from source (UIDAI gives none); chosen as A4 at 150 DPI =
--   1240 x 1754 px, legible for the back-office verifier and small enough to stay under 2 MB.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('aadhaar-update-document', 1, 'UIDAI Aadhaar update - Supporting document', 'document',
     1240, 1754, 150, 'pdf', 0, 2000,
     'aadhaar_document_{job_id}', 'any',
     'https://en.vikaspedia.in/e-governance/online-citizen-services/government-to-citizen-services-g2c/all-about-aadhaar/update-your-aadhaar-data',
     TRUE);

-- Generic college/university admission form, passport-size photograph.
-- Not a single portal's rule: not confirmed from source; chosen because Indian forms that ask for
-- "passport size" mean 3.5 x 4.5 cm, which at 300 DPI is 413 x 531 px (conversion as tabulated in
-- "Document photos are specified in millimetres. Your canvas works in pixels", DEV Community,
-- https://dev.to/passportsizephoto/document-photos-are-specified-in-millimetres-your-canvas-works-in-pixels-5ab7 ),
-- and 20-200 KB fits inside the windows most such forms state (e.g. NTA 10-200 KB) while keeping
-- the face sharp. Light background, as most college forms accept white or light.
INSERT INTO portal_schemas
    (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb,
     filename_pattern, background, source_url, active)
VALUES
    ('college-generic-photo', 1, 'College admission (generic) - Passport-size photograph', 'photo',
     413, 531, 300, 'jpeg', 20, 200,
     'college_photo_{job_id}', 'light',
     'https://dev.to/passportsizephoto/document-photos-are-specified-in-millimetres-your-canvas-works-in-pixels-5ab7',
     TRUE);
