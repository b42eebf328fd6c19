-- Row-level security for batches (migration 0008's rules, for the table 0007 added): the API's
-- role sees and creates only the batches of the user its transaction names, or reads the one
-- batch a verified signed link names; it never changes or deletes one (packaging is the
-- workers'). Workers see every batch, to package and expire them.
ALTER TABLE batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_api_select ON batches FOR SELECT TO rythmiq_api
    USING (user_id = rythmiq_request_user() OR id = rythmiq_signed_link_id());
CREATE POLICY batches_api_insert ON batches FOR INSERT TO rythmiq_api
    WITH CHECK (user_id = rythmiq_request_user());
CREATE POLICY batches_worker ON batches FOR ALL TO rythmiq_worker USING (true) WITH CHECK (true);

GRANT SELECT, INSERT ON batches TO rythmiq_api;
GRANT SELECT, UPDATE ON batches TO rythmiq_worker;
