-- A second kind of alert beside the hourly surge: a sustained rise of the daily negative share against a long
-- baseline (a crisis that builds over weeks). Each kind keeps its own live alert per subject.
ALTER TABLE alerts ADD COLUMN kind text NOT NULL DEFAULT 'surge' CHECK (kind IN ('surge', 'regime'));
ALTER TABLE alerts DROP CONSTRAINT alerts_subject_started_key;
ALTER TABLE alerts ADD CONSTRAINT alerts_subject_kind_started_key UNIQUE (dimension, key, kind, model_version, started_at);
DROP INDEX alerts_one_live_per_subject;
CREATE UNIQUE INDEX alerts_one_live_per_subject_kind ON alerts (dimension, key, kind, model_version) WHERE status <> 'resolved';
