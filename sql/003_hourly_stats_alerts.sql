-- Hourly aggregates (recomputable for any hour) and negative-surge alerts.

CREATE TABLE hourly_stats (
    hour            timestamptz NOT NULL,          -- start of the hour (UTC)
    dimension       text NOT NULL CHECK (dimension IN ('overall', 'topic', 'source')),
    key             text NOT NULL,                 -- topic name, feed name, or 'all'
    model_version   text NOT NULL REFERENCES models (version),
    stories         integer NOT NULL,
    negatives       integer NOT NULL,
    neg_share       double precision NOT NULL,
    mean_sentiment  double precision NOT NULL,     -- mean of p_positive - p_negative
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hour, dimension, key, model_version)
);
CREATE INDEX hourly_stats_lookup_idx ON hourly_stats (model_version, dimension, key, hour);

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    topic            text NOT NULL,                -- topic name or 'overall'
    model_version    text NOT NULL REFERENCES models (version),
    started_at       timestamptz NOT NULL,         -- first surging hour
    last_hour        timestamptz NOT NULL,         -- latest surging hour seen
    window_end       timestamptz NOT NULL,         -- end of the latest surging hour
    observed_stories integer NOT NULL,
    observed_negatives integer NOT NULL,
    observed_share   double precision NOT NULL,
    baseline_share   double precision NOT NULL,
    baseline_stories integer NOT NULL,
    p_value          double precision NOT NULL,
    score            double precision NOT NULL,    -- z-score of the negative count against the baseline
    severity         text NOT NULL CHECK (severity IN ('warning', 'critical')),
    peak_severity    text NOT NULL CHECK (peak_severity IN ('warning', 'critical')),
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    top_stories      jsonb NOT NULL DEFAULT '[]',  -- the negative stories that drove it
    hours_surging    integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    notified_at      timestamptz,                  -- set only after a successful send
    notify_attempts  integer NOT NULL DEFAULT 0,
    last_notify_error text,
    UNIQUE (topic, model_version, started_at)
);
-- At most one live (open or acknowledged) alert per topic and model.
CREATE UNIQUE INDEX alerts_one_live_per_topic ON alerts (topic, model_version) WHERE status <> 'resolved';

-- Stories are placed in the hour they were published (fetch time when undated).
CREATE INDEX articles_story_time_idx ON articles ((coalesce(published_at, fetched_at)));
