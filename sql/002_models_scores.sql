-- Model registry and per-article scores. One model is active at a time.

CREATE TABLE models (
    version      text PRIMARY KEY,          -- e.g. 20261124T065507-finetune
    path         text NOT NULL,             -- model directory (weights, tokenizer, label maps, report)
    method       text NOT NULL,             -- heads (fast path) | finetune (quality path)
    base_model   text NOT NULL,
    data_sha256  text NOT NULL,             -- hash of the training files
    training     jsonb NOT NULL,            -- the full training configuration
    metrics      jsonb,                     -- held-out evaluation summary (NULL until evaluated)
    created_at   timestamptz NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    is_active    boolean NOT NULL DEFAULT false,
    promoted_at  timestamptz,
    promoted_by  text
);
CREATE UNIQUE INDEX models_one_active ON models (is_active) WHERE is_active;

CREATE TABLE scores (
    article_id       bigint NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    model_version    text NOT NULL REFERENCES models (version),
    sentiment        text NOT NULL CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    p_negative       real NOT NULL,
    p_neutral        real NOT NULL,
    p_positive       real NOT NULL,
    topic            text NOT NULL,
    topic_confidence real NOT NULL,
    scored_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, model_version)
);
CREATE INDEX scores_model_version_idx ON scores (model_version, article_id);
