-- Company-level sentiment: the entity catalogue and watchlists (synced from data/entities + config/entities.yaml),
-- the companies each story names, per-(story, entity) labels, and alerts generalised from topic to (dimension, key)
-- so that topics, sources and companies share one detector and one alert path.

CREATE TABLE entities (
    id          text PRIMARY KEY,               -- stable slug, e.g. apple
    name        text NOT NULL,
    aliases     text[] NOT NULL DEFAULT '{}',
    tickers     text[] NOT NULL DEFAULT '{}',   -- EXCHANGE:SYMBOL
    sector      text NOT NULL DEFAULT '',
    country     text NOT NULL DEFAULT '',
    source      text NOT NULL,                  -- pytickersymbols | sentfin | user | bundled+user
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE watchlists (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE watchlist_entities (
    watchlist   text NOT NULL REFERENCES watchlists (name) ON DELETE CASCADE,
    entity_id   text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    PRIMARY KEY (watchlist, entity_id)
);

-- The fingerprint of the synced catalogue; stories linked with another one are linked again.
CREATE TABLE entity_catalogue_state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    fingerprint text NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE articles ADD COLUMN linked_fingerprint text;

CREATE TABLE story_entities (
    article_id  bigint NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    entity_id   text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    start_pos   integer NOT NULL,               -- character offsets in articles.title
    end_pos     integer NOT NULL,
    matched     text NOT NULL,
    method      text NOT NULL,                  -- name | alias | cashtag | ticker-context | ticker
    confidence  real NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, entity_id, start_pos)
);
CREATE INDEX story_entities_entity_idx ON story_entities (entity_id, article_id);

CREATE TABLE entity_scores (
    article_id    bigint NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    entity_id     text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    model_version text NOT NULL REFERENCES models (version),
    sentiment     text NOT NULL CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    p_negative    real NOT NULL,
    p_neutral     real NOT NULL,
    p_positive    real NOT NULL,
    method        text NOT NULL CHECK (method IN ('entity_head', 'story_label')),
    scored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, entity_id, model_version)
);
CREATE INDEX entity_scores_entity_idx ON entity_scores (model_version, entity_id);

ALTER TABLE hourly_stats DROP CONSTRAINT hourly_stats_dimension_check;
ALTER TABLE hourly_stats ADD CONSTRAINT hourly_stats_dimension_check
    CHECK (dimension IN ('overall', 'topic', 'source', 'entity'));

-- alerts.topic becomes (dimension, key), the same pair hourly_stats uses; the whole stream is ('overall', 'all').
ALTER TABLE alerts RENAME COLUMN topic TO key;
ALTER TABLE alerts ADD COLUMN dimension text NOT NULL DEFAULT 'topic'
    CHECK (dimension IN ('overall', 'topic', 'source', 'entity'));
UPDATE alerts SET dimension = 'overall', key = 'all' WHERE key = 'overall';
ALTER TABLE alerts ALTER COLUMN dimension DROP DEFAULT;
ALTER TABLE alerts DROP CONSTRAINT alerts_topic_model_version_started_at_key;
ALTER TABLE alerts ADD CONSTRAINT alerts_subject_started_key UNIQUE (dimension, key, model_version, started_at);
DROP INDEX alerts_one_live_per_topic;
CREATE UNIQUE INDEX alerts_one_live_per_subject ON alerts (dimension, key, model_version) WHERE status <> 'resolved';

GRANT SELECT ON entities, watchlists, watchlist_entities, entity_catalogue_state, story_entities, entity_scores
    TO finsent_dashboard;
