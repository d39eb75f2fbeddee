-- The dashboard reads through a restricted role: SELECT everywhere, and the
-- only write it needs, acknowledging alerts. Roles are cluster-wide, hence the guard; and two databases of one
-- server migrated at the same moment race past the check (the migration lock is per database): the loser's
-- duplicate is the role it wanted, so it is tolerated.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'finsent_dashboard') THEN
        CREATE ROLE finsent_dashboard NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO finsent_dashboard;
GRANT SELECT ON feeds, articles, ingest_runs, models, scores, hourly_stats, alerts TO finsent_dashboard;
GRANT UPDATE (status, acknowledged_by, acknowledged_at, updated_at) ON alerts TO finsent_dashboard;

-- Headline text search.
CREATE INDEX articles_title_fts_idx ON articles USING gin (to_tsvector('english', title));
-- Latest stories first.
CREATE INDEX scores_model_scored_idx ON scores (model_version, scored_at DESC);
CREATE INDEX alerts_started_idx ON alerts (started_at DESC);
