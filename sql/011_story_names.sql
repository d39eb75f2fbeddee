-- Company names a headline gives that no catalogue entry holds (private companies, start-ups, brands): found
-- by the model's mention tagger (pipeline/entities/detect.py), kept as written so a surge on them is still seen.
CREATE TABLE story_names (
    article_id  bigint NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    start_pos   integer NOT NULL,               -- character offsets in articles.title
    end_pos     integer NOT NULL,
    name        text NOT NULL,                  -- as written
    name_key    text NOT NULL,                  -- case and punctuation folded: what counts and search group by
    confidence  real NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, start_pos)
);
CREATE INDEX story_names_key_idx ON story_names (name_key, article_id);

-- story_entities.method gains 'detected' (a tagger span linked to the catalogue by its exact form)
COMMENT ON COLUMN story_entities.method IS 'name | alias | cashtag | ticker-context | ticker | detected';

GRANT SELECT ON story_names TO finsent_dashboard;
