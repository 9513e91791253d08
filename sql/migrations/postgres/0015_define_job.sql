-- PostgreSQL: who defined a job is the database's own `current_user`, never what a row says.
--
-- A trigger sets `defined_by` from `current_user` whenever a row's name, query or options are
-- written (INSERT, or an UPDATE that changes them), and keeps the old definer otherwise, so an
-- analyst cannot forge it: writing `defined_by = 'alice'` is ignored, and whoever edits alice's
-- query becomes the definer of the new version (the worker runs it with their rights, SET ROLE).
-- The worker's own writes (state, version, last_error, ...) change none of the three and so
-- keep the definer. Only the table's owner (the worker's role) can disable the trigger.

-- Definers written before this migration were never checked: such rows are refused until saved again.
UPDATE warehouse_batch.job_definitions SET defined_by = NULL;

CREATE OR REPLACE FUNCTION warehouse_batch.job_definitions_definer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name OR NEW.query IS DISTINCT FROM OLD.query
            OR NEW.options::jsonb IS DISTINCT FROM OLD.options::jsonb THEN
        NEW.defined_by := current_user;
        NEW.defined_at := current_timestamp;
    ELSE
        NEW.defined_by := OLD.defined_by;
        NEW.defined_at := OLD.defined_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_definitions_definer BEFORE INSERT OR UPDATE ON warehouse_batch.job_definitions
FOR EACH ROW EXECUTE FUNCTION warehouse_batch.job_definitions_definer();

-- Define or change a job in one call: SELECT warehouse_batch.define_job('sentiment', 'SELECT ...',
-- '{"model": "gpt-4o-mini"}'). Runs with the caller's rights (SECURITY INVOKER), so the caller needs
-- INSERT and UPDATE on job_definitions, and the trigger records them as the definer. Pausing and
-- cancelling stay their own columns: define_job changes only the query and options.
CREATE OR REPLACE FUNCTION warehouse_batch.define_job(job_name text, job_query text, job_options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql AS $$
INSERT INTO warehouse_batch.job_definitions (name, query, options)
VALUES (job_name, job_query, job_options::json)
ON CONFLICT (name) DO UPDATE SET query = EXCLUDED.query, options = EXCLUDED.options
$$;
