-- A story's time is when it was published, or when it was fetched if the feed gave no usable date.
-- One generated column names it, so SQL everywhere says story_time instead of repeating the coalesce.
ALTER TABLE articles
    ADD COLUMN story_time timestamptz GENERATED ALWAYS AS (coalesce(published_at, fetched_at)) STORED;
DROP INDEX IF EXISTS articles_story_time_idx;
CREATE INDEX articles_story_time_idx ON articles (story_time);
