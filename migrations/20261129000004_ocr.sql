-- OCR results: the job result carries the summary, documents point at the stored text.

-- {"confidence", "lines", "chars", "rolled_back"}; NULL until the job completes.
ALTER TABLE jobs ADD COLUMN ocr JSONB;

-- The recognised text of a document, stored as JSON next to its output (never in a log).
ALTER TABLE documents ADD COLUMN ocr_text_key TEXT;
