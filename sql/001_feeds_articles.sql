-- Feed registry and stored stories. All times are timestamptz in UTC.

CREATE TABLE feeds (
    id               serial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    url              text NOT NULL,
    final_url        text,                 -- where redirects led on the last fetch
    etag             text,                 -- for conditional GET
    last_modified    text,                 -- for conditional GET (sent back verbatim)
    last_fetched_at  timestamptz,
    last_success_at  timestamptz,
    last_status      text CHECK (last_status IN ('ok', 'not_modified', 'error')),
    last_http_status integer,
    last_error       text,                 -- why the last fetch failed (NULL when it did not)
    last_warning     text,                 -- parsed, but feedparser flagged the document
    last_items       integer,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE articles (
    id             bigserial PRIMARY KEY,
    feed_id        integer NOT NULL REFERENCES feeds (id),
    guid           text,                   -- NULL when the feed gives none we can trust
    url            text,                   -- link as published
    canonical_url  text,                   -- link without tracking parameters or fragment
    title          text NOT NULL,
    summary        text NOT NULL DEFAULT '',
    published_at   timestamptz,            -- NULL when the feed gives no usable date
    fetched_at     timestamptz NOT NULL,
    content_hash   text NOT NULL,          -- sha256 of normalised title + summary
    title_hash     text NOT NULL           -- sha256 of normalised title (syndication dedupe)
);

-- Re-ingestion is a no-op: a story is known by its guid within its feed, or by
-- its canonical URL anywhere.
CREATE UNIQUE INDEX articles_feed_guid_key ON articles (feed_id, guid) WHERE guid IS NOT NULL;
CREATE UNIQUE INDEX articles_canonical_url_key ON articles (canonical_url) WHERE canonical_url IS NOT NULL;
CREATE INDEX articles_title_hash_idx ON articles (title_hash, published_at);
CREATE INDEX articles_published_at_idx ON articles (published_at);
CREATE INDEX articles_fetched_at_idx ON articles (fetched_at);

-- One row per ingestion pass, for pipeline health and audit.
CREATE TABLE ingest_runs (
    id            bigserial PRIMARY KEY,
    run_key       text,                    -- e.g. the Airflow run id; NULL for CLI runs
    window_start  timestamptz,
    window_end    timestamptz,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    feeds_ok      integer NOT NULL,
    feeds_failed  integer NOT NULL,
    items_seen    integer NOT NULL,
    items_new     integer NOT NULL,
    duplicates    integer NOT NULL,
    summary       jsonb NOT NULL
);
CREATE INDEX ingest_runs_finished_at_idx ON ingest_runs (finished_at DESC);
